"""EDBB: the edge-enhanced diverse branch block of EFDN (Wang, NTIRE 2022 ESR, Fig. 2b, Sec. 3.1).

A :class:`~sr_lightning.archs.rep_block.RepBlock` (modes "online" / "branch", ``reparameterize()``) whose default
branches are the paper's seven, summed (no BN, no activation inside; EFDN applies PReLU after the block):
``conv3x3``, ``conv1x1``, ``identity`` (in == out), ``expand`` (1x1 -> 3x3 expand-squeeze), and ``sobel_x``,
``sobel_y``, ``laplacian`` (1x1 -> fixed edge filter times a per-channel gain, + bias); see ``branches``.
Table 3's VDSR-row variants are other branch lists (conf/block/edbb_*.yaml): without ``conv1x1``, without
``identity``, or ``avgpool`` in place of the three edge filters. ``make_edbb(..., mode="deploy")`` builds the plain
conv an EDBB folds into.

Differences from the official code (icandle/EFDN ``models/unitv2.py``), on purpose:
- Branches: the official ``EDBB`` enables five by default (3x3, 1x1, the three edge branches; the 1x1->3x3
  ``with_13`` and the identity ``with_idt`` are off). We default to the paper's seven.
- Its ``gv`` mode runs 3x3 + edge branches + x, but its ``switch_to_deploy`` adds the identity only when
  ``with_idt`` is set, so a ``gv`` block folds to a conv that lacks the identity. Here the fold always
  contains exactly the enabled branches.
- Expand width: mid = int(out_channels * expand_ratio) as in the official ``depth_multiplier``, whose ``EDBB``
  default (``None`` -> in_channels, i.e. mid = in * out) is unused there; its commented ``Cell`` line and ECBSR
  use 2.0, which is our default.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from sr_lightning.archs.rep_block import RepBlock, build_block, set_block_mode

#: The paper's seven EDBB branches (Fig. 2b), in state-dict order.
BRANCHES: tuple[str, ...] = ("conv3x3", "conv1x1", "identity", "expand", "sobel_x", "sobel_y", "laplacian")


class EDBB(RepBlock):
    """Edge-enhanced diverse branch block, in training form (``mode`` "online" or "branch"): a :class:`RepBlock`
    (same arguments) whose ``branches`` default to :data:`BRANCHES`, the paper's block. For the deployed conv use
    :meth:`reparameterize` or :func:`make_edbb` with ``mode="deploy"``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        branches: Sequence[str] = BRANCHES,
        expand_ratio: float = 2.0,
        mode: str = "online",
    ) -> None:
        super().__init__(in_channels, out_channels, branches=branches, expand_ratio=expand_ratio, mode=mode)


def make_edbb(
    in_channels: int,
    out_channels: int,
    branches: Sequence[str] = BRANCHES,
    expand_ratio: float = 2.0,
    mode: str = "online",
) -> nn.Module:
    """``conv3x3`` factory for EFDN: an :class:`EDBB` ("online" / "branch"), or for ``mode="deploy"`` the plain
    ``nn.Conv2d(in, out, 3, padding=1)`` that an EDBB folds into (deploy state-dict keys)."""
    return build_block(EDBB, in_channels, out_channels, branches, expand_ratio, mode)


def set_edbb_mode(net: nn.Module, mode: str) -> int:
    """Switch every EDBB inside ``net`` to ``mode`` ("online" or "branch"); returns how many were switched
    (``rep_block.set_block_mode`` switches every re-parameterizable block, EDBB or not)."""
    return set_block_mode(net, mode, EDBB)
