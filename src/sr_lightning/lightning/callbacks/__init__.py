"""Lightning callbacks of sr-lightning (each has a YAML under `conf/callbacks/`)."""

from sr_lightning.lightning.callbacks.reparam import Reparameterize

__all__ = ["Reparameterize"]
