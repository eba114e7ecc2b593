"""The jobs the entry points share, one function each: start and finish a training (`training`), evaluate a weights
file on the test sets (`evaluation`), measure and write complexity (`complexity`). Entry modules compose the config,
call one of these and report."""
