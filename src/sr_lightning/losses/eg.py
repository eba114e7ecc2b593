"""EFDN's edge-enhanced gradient-variance (EG) loss (Wang, "Edge-enhanced Feature Distillation Network for Efficient
Super-Resolution", CVPRW / NTIRE 2022 ESR, Sec. 3.3):

    L_EG = L1(SR, HR) + λx·Lx + λy·Ly + λl·Ll

where Lx, Ly, Ll are the gradient-variance terms (`GradientVarianceLoss`) of the Sobel-x, Sobel-y and Laplacian
gradient maps. The official repository releases no training code; its author says the loss is built on the
official GV loss code (icandle/EFDN issues #2, #9) and that λ may simply be set by hand to 1e-3 (issue #4), which
is our fixed default.

λ = "auto": the paper takes λ from the normalised per-channel gains (the official code calls them `scale`) of a
pre-trained EDBB's Sobel-x / Sobel-y / Laplacian branches (the official `EDBB.switch_to_gv`, per issue #4, prepared
that network). The exact normalisation is not published; we use, per branch k, the mean absolute per-channel gain
pooled over every EDBB of the network, g_k = mean|gain_k|, and λ_k = factor · g_k / (g_x + g_y + g_l) (so the three
λ sum to `factor`). |gain| because a branch with a negative gain is the same edge detector with the opposite sign.
The gains are read from the network being trained (the LightningModule calls `set_lambdas_from_network` at fit start;
in the EFDN chain that is the stage-1 network loaded with `init_from`), or given as tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.losses.gradient_variance import GradientVarianceLoss
from sr_lightning.ops.edges import GRAY_MATLAB

EDGE_TERMS = ("sobel_x", "sobel_y", "laplacian")
# Per edge branch, the parameter-name suffixes of its per-channel gain: this project's EDBB (`archs/edbb.py`:
# <block>.sobel_x.gain, ...), the same before the branch parameter was renamed from `scale` to `gain` (files written
# then: <block>.sobel_x.scale, ...) and the official training-form EDBB (<block>.conv1x1_sbx.scale, ...; the official
# naming never changes).
DEFAULT_GAIN_SUFFIXES: tuple[tuple[str, ...], ...] = (
    ("sobel_x.gain", "sobel_x.scale", "conv1x1_sbx.scale"),
    ("sobel_y.gain", "sobel_y.scale", "conv1x1_sby.scale"),
    ("laplacian.gain", "laplacian.scale", "conv1x1_lpl.scale"),
)


def edge_lambdas_from_gains(
    gain_x: torch.Tensor, gain_y: torch.Tensor, gain_l: torch.Tensor, factor: float = 1.0
) -> tuple[float, float, float]:
    """λ_k = factor · mean|gain_k| / Σ_j mean|gain_j| for the Sobel-x, Sobel-y and Laplacian branch gains
    (any shapes; pass the gains of all EDBBs of a network concatenated)."""
    means = [g.detach().abs().double().mean().item() if g.numel() else math.nan for g in (gain_x, gain_y, gain_l)]
    total = sum(means)
    if not math.isfinite(total) or total <= 0:
        raise ValueError(f"cannot normalise edge-branch gains with mean |gain| {means}")
    lx, ly, ll = (factor * m / total for m in means)
    return lx, ly, ll


def _as_suffix_groups(gain_suffixes: Sequence[str | Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    groups = tuple((s,) if isinstance(s, str) else tuple(str(x) for x in s) for s in gain_suffixes)
    if len(groups) != 3 or not all(groups):
        raise ValueError(f"gain_suffixes needs 3 entries (Sobel-x, Sobel-y, Laplacian), got {gain_suffixes!r}")
    return groups


def collect_edge_gains(
    named_tensors: Mapping[str, torch.Tensor] | Sequence[tuple[str, torch.Tensor]],
    gain_suffixes: Sequence[str | Sequence[str]] = DEFAULT_GAIN_SUFFIXES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool (flatten + concatenate) every tensor whose name is, or ends in "." + , one of each branch's suffixes
    (a network's `named_parameters()` or a state dict).

    Raises ValueError when a branch has no match (e.g. a deploy-form network, whose EDBBs are folded)."""
    items = list(named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors)
    pooled = []
    for suffixes in _as_suffix_groups(gain_suffixes):
        found = [t.detach().flatten().float().cpu() for n, t in items if any(_matches(n, s) for s in suffixes)]
        if not found:
            raise ValueError(
                f"no edge-branch gain named *{' / *'.join(suffixes)} found; lambdas='auto' needs a training-form "
                "network with EDBB blocks (set loss.gain_suffixes if its parameters are named differently)"
            )
        pooled.append(torch.cat(found))
    return pooled[0], pooled[1], pooled[2]


def _matches(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


class EdgeGradientLoss(nn.Module):
    """L_EG = L1 + λx·Lx + λy·Ly + λl·Ll (EFDN Sec. 3.3); `terms()` gives the unweighted parts.

    Args:
        patch_size: GV patch side n (default 8); sizes not divisible by n are cropped, see `GradientVarianceLoss`.
        lambdas: three floats (λx, λy, λl), default 1e-3 each (EFDN author, icandle/EFDN issue #4), or "auto": then
            the caller sets λ before the first forward, with `set_lambdas_from_network(net)` (the LightningModule
            does at fit start) or `set_lambdas_from_gains(...)`; `needs_network` tells whether it still must.
        auto_factor: with "auto", the λ sum to this factor (see `edge_lambdas_from_gains`).
        gain_suffixes: per branch (Sobel-x, Sobel-y, Laplacian), the parameter-name suffix(es) of its gain.
        gray_weights, padding_mode: passed to `GradientVarianceLoss`.

    The λ live in the buffer `lambdas` (float32, shape (3,)): they are saved in and restored from the state dict
    (a resumed run keeps its auto λ), NaN until an "auto" loss has been given its network.
    """

    def __init__(
        self,
        patch_size: int = 8,
        lambdas: Sequence[float] | str = (1e-3, 1e-3, 1e-3),
        auto_factor: float = 1.0,
        gain_suffixes: Sequence[str | Sequence[str]] = DEFAULT_GAIN_SUFFIXES,
        gray_weights: Sequence[float] = GRAY_MATLAB,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        self.gv = GradientVarianceLoss(patch_size, EDGE_TERMS, gray_weights, padding_mode)
        self.auto = isinstance(lambdas, str)
        if self.auto and lambdas != "auto":
            raise ValueError(f"lambdas must be three floats or 'auto', got {lambdas!r}")
        self.auto_factor = float(auto_factor)
        self.gain_suffixes = _as_suffix_groups(gain_suffixes)
        init = [math.nan] * 3 if self.auto else [float(v) for v in lambdas]
        if len(init) != 3:
            raise ValueError(f"lambdas needs 3 values (λx, λy, λl), got {lambdas!r}")
        self.register_buffer("lambdas", torch.tensor(init, dtype=torch.float32))
        # Host-side flag: whether the λ are known. Checked at every step without reading the buffer (no GPU sync);
        # updated when λ are set and when a state dict (a checkpoint) is loaded.
        self._lambdas_known = not self.auto

    @property
    def needs_network(self) -> bool:
        """True while an "auto" loss still waits for `set_lambdas_from_network(net)`."""
        return not self._lambdas_known

    def _set(self, values: Sequence[float]) -> tuple[float, float, float]:
        self.lambdas.copy_(torch.tensor(list(values), dtype=torch.float32))
        self._lambdas_known = True
        lx, ly, ll = (float(v) for v in values)
        return lx, ly, ll

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        loaded = state_dict.get(prefix + "lambdas")
        if loaded is not None:  # one host read when a checkpoint is loaded, not one per step
            self._lambdas_known = bool(torch.isfinite(loaded).all())

    def set_lambdas_from_gains(
        self, gain_x: torch.Tensor, gain_y: torch.Tensor, gain_l: torch.Tensor
    ) -> tuple[float, float, float]:
        """Set λ from edge-branch gains with `edge_lambdas_from_gains(..., self.auto_factor)`; returns them."""
        return self._set(edge_lambdas_from_gains(gain_x, gain_y, gain_l, self.auto_factor))

    def set_lambdas_from_network(self, net: nn.Module) -> tuple[float, float, float]:
        """Set λ from the EDBB edge-branch gains of `net` (parameters named by `gain_suffixes`); returns them."""
        return self.set_lambdas_from_gains(*collect_edge_gains(list(net.named_parameters()), self.gain_suffixes))

    def terms(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted parts: {"l1": L1, "sobel_x": Lx, "sobel_y": Ly, "laplacian": Ll}."""
        return {"l1": F.l1_loss(sr, hr), **self.gv.terms(sr, hr)}

    def components(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms (`terms`) and their weighted sum under "total", from one evaluation."""
        if self.needs_network:
            raise RuntimeError(
                "EdgeGradientLoss(lambdas='auto') has no λ yet: call set_lambdas_from_network(net) first"
            )
        t = self.terms(sr, hr)
        edge = torch.stack([t[k] for k in EDGE_TERMS])
        return {**t, "total": t["l1"] + (self.lambdas.to(edge.dtype) * edge).sum()}

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self.components(sr, hr)["total"]

    def extra_repr(self) -> str:
        lam = "auto (unset)" if self.needs_network else [round(v, 6) for v in self.lambdas.tolist()]
        return f"lambdas={lam}, auto={self.auto}, auto_factor={self.auto_factor}"
