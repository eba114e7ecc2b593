"""Lightning glue: the generic SR LightningModule and its helpers."""

from sr_lightning.lightning.module import SRModule

__all__ = ["SRModule"]
