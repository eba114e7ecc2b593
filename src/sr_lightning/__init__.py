"""sr-lightning: Lightning + Hydra toolkit for lightweight single-image super-resolution."""

__version__ = "0.1.0"
