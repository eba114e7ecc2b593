"""sr-lightning: Lightning + Hydra toolkit for lightweight single-image super-resolution.

`load_model(weights)` gives a ready deploy-form network for any weights file (network and scale detected);
`upscale_image(model, image, tile=..., ensemble=...)` applies it to an array or tensor.
"""

from __future__ import annotations

from typing import Any

# Importing the library changes nothing in the process: process settings (huge pages, ...) are the entry points'
# (sr_lightning/process.py).

__version__ = "0.1.0"
__all__ = ["__version__", "load_model", "upscale_image"]


def __getattr__(name: str) -> Any:
    """`load_model` / `upscale_image` imported on first use (plain `import sr_lightning` stays light)."""
    if name == "load_model":
        from sr_lightning.inference.loading import load_model

        return load_model
    if name == "upscale_image":
        from sr_lightning.inference.upscaler import upscale_image

        return upscale_image
    raise AttributeError(f"module 'sr_lightning' has no attribute {name!r}")
