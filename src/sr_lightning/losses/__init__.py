"""Training losses. Each has one YAML in `conf/loss/`."""

from sr_lightning.losses.eg import EdgeGradientLoss, edge_lambdas_from_gains
from sr_lightning.losses.gradient_variance import GradientVarianceLoss
from sr_lightning.losses.pixel import CharbonnierLoss

__all__ = ["CharbonnierLoss", "EdgeGradientLoss", "GradientVarianceLoss", "edge_lambdas_from_gains"]
