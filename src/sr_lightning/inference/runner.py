"""A network made ready for inference: device, precision, memory format and compilation chosen once.

Precision: float32 is the default everywhere and the only choice on CPU. On a GPU, ``precision="fp16"`` or
``"bf16"`` converts the network to that dtype (opt-in: outputs differ from the float32 ones, docs/deploy.md "Upscale").
``channels_last`` stores weights and inputs NHWC (same values; faster for some networks on some CPUs, see
benchmarks/inference_speed.py). A network that comes in channels_last already (as `load_model` may give it) is fed
NHWC inputs without being asked: the input layout follows the weights' (`input_memory_format`), chosen once.
``compile=True`` runs `torch.compile` (dynamic shapes; first call slow).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def input_memory_format(net: nn.Module) -> torch.memory_format:
    """The layout to feed `net`: ``net.sr_memory_format`` when the network says, else channels_last when its first
    4-D weight whose layout is unambiguous (not 1x1, not one input channel) is stored NHWC, else NCHW."""
    said = getattr(net, "sr_memory_format", None)
    if isinstance(said, torch.memory_format):
        return said
    for param in net.parameters():
        if param.dim() != 4:
            continue
        nchw, nhwc = param.is_contiguous(), param.is_contiguous(memory_format=torch.channels_last)
        if nchw != nhwc:
            return torch.channels_last if nhwc else torch.contiguous_format
    return torch.contiguous_format


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None: CUDA when available, else CPU; anything else as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Runner:
    """Calls a deploy-form network on float32 [0, 1] NCHW batches and returns float32 outputs on the same device.

    Attributes `scale` and `min_input_size` come from the network; `label` says how it runs (for reports).
    """

    def __init__(
        self,
        net: nn.Module,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        scale: int | None = None,
        min_input_size: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.device = pick_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise ValueError(f"precision={precision} is for GPUs; on {self.device.type} inference runs in fp32")
        self.dtype = PRECISIONS[precision]
        self.channels_last = bool(channels_last)
        # a TorchScript module has no Python attributes: its export metadata gives them
        self.scale = int(scale if scale is not None else net.scale)
        self.min_input_size = int(min_input_size if min_input_size is not None else getattr(net, "min_input_size", 1))
        for param in net.parameters():  # (ScriptModules have no requires_grad_)
            param.requires_grad_(False)
        self.module = net.eval().to(self.device, self.dtype)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.memory_format = torch.channels_last if self.channels_last else input_memory_format(self.module)
        self._call: Any = torch.compile(self.module, dynamic=True) if compile else self.module
        nhwc = self.memory_format == torch.channels_last
        parts = [precision, "channels_last" if nhwc else "", "compiled" if compile else ""]
        name = getattr(net, "original_name", type(net).__name__)  # a ScriptModule's class name
        self.label = f"{name} x{self.scale} on {self.device.type} ({', '.join(p for p in parts if p)})"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        return self._call(x).float()
