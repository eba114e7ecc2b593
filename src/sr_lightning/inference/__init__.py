"""Inference helpers shared by the test loop and (later) the upscaling CLI."""

from sr_lightning.inference.chop import forward_chop

__all__ = ["forward_chop"]
