"""Lightning callbacks of sr-lightning (each has a YAML under `conf/callbacks/`)."""

from sr_lightning.lightning.callbacks.checkpoints import LastCheckpoint
from sr_lightning.lightning.callbacks.ema import EMA
from sr_lightning.lightning.callbacks.preemption import Preemption, preemption_exit_code
from sr_lightning.lightning.callbacks.reparam import Reparameterize
from sr_lightning.lightning.callbacks.wandb_panels import WandbPanels

__all__ = ["EMA", "LastCheckpoint", "Preemption", "Reparameterize", "WandbPanels", "preemption_exit_code"]
