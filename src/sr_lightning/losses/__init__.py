"""Training losses. Each has one YAML in `conf/loss/`."""

from sr_lightning.losses.pixel import CharbonnierLoss

__all__ = ["CharbonnierLoss"]
