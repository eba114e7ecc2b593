"""The published re-parameterizable 3x3 blocks that EFDN's Table 3 compares with EDBB, as ``conv3x3`` factories.

Each is a :class:`~sr_lightning.archs.rep_block.RepBlock` with its paper's branch list (EFDN paper Fig. 2a,
Table 3), so it folds exactly into one 3x3 conv; ``mode="deploy"`` gives that plain conv. All are without BN, as in
EFDN's Table 3 ("BN layers are discarded"): each branch has its own conv bias instead of a BN.
EDBB and its Table 3 variants: ``sr_lightning.archs.edbb.make_edbb`` with a branch list.
"""

from __future__ import annotations

from torch import nn

from sr_lightning.archs.rep_block import RepBlock, build_block

#: RepVGG (Ding et al., CVPR 2021): 3x3 + 1x1 + identity.
REPVGG_BRANCHES: tuple[str, ...] = ("conv3x3", "conv1x1", "identity")
#: DBB (Ding et al., CVPR 2021): KxK + 1x1 + 1x1->KxK + 1x1->avg-pool (K = 3).
DBB_BRANCHES: tuple[str, ...] = ("conv3x3", "conv1x1", "expand", "avgpool")
#: ECB (ECBSR, Zhang et al., ACM MM 2021): 3x3 + 1x1->3x3 + 1x1->scaled Sobel-x / Sobel-y / Laplacian.
ECB_BRANCHES: tuple[str, ...] = ("conv3x3", "expand", "sobel_x", "sobel_y", "laplacian")


def make_repvgg(in_channels: int, out_channels: int, mode: str = "online") -> nn.Module:
    """RepVGG block without BN. As in RepVGG, the identity branch exists only when ``in_channels == out_channels``
    (its ``rbr_identity``; stride is always 1 here)."""
    branches = REPVGG_BRANCHES if in_channels == out_channels else _without_identity(REPVGG_BRANCHES)
    return build_block(RepBlock, in_channels, out_channels, branches, mode=mode)


def make_dbb(in_channels: int, out_channels: int, expand_ratio: float = 1.0, mode: str = "online") -> nn.Module:
    """DBB without BN (Table 3's row). Differences from the DBB paper: no BN after any branch (and so no BN bias
    padding: the 1x1 outputs are padded with the 1x1 conv bias instead); the 1x1->3x3 hidden width is
    ``int(out * expand_ratio)``, 1.0 by default (DBB: ``in_channels``, the same when in == out), and its 1x1 is a
    plain conv (DBB's ``IdentityBasedConv1x1`` adds a fixed identity to that weight, same function class); the
    avg-pool path's closing BN affine is the scaled-filter ``gain`` / ``bias`` (starting at N(0, 1e-3^2), not 1 / 0)."""
    return build_block(RepBlock, in_channels, out_channels, DBB_BRANCHES, expand_ratio, mode)


def make_ecb(
    in_channels: int,
    out_channels: int,
    expand_ratio: float = 2.0,
    with_idt: bool = False,
    mode: str = "online",
) -> nn.Module:
    """ECB (ECBSR) as in Table 3's row: no identity, no plain 1x1. ``with_idt`` adds ECBSR's optional identity
    (kept only when ``in_channels == out_channels``, as in ECBSR); ``expand_ratio`` is ECBSR's ``depth_multiplier``
    (2.0 in its networks). ECBSR's ECB ends with its own activation (``act_type``); here the block is linear and
    the network applies the activation (EFDN: PReLU after each block)."""
    branches = ECB_BRANCHES
    if with_idt and in_channels == out_channels:
        branches = ("identity", *ECB_BRANCHES)
    return build_block(RepBlock, in_channels, out_channels, branches, expand_ratio, mode)


def _without_identity(branches: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(b for b in branches if b != "identity")
