"""The one explicit table of this package's networks and block factories.

Files name networks and blocks by dotted ``_target_`` strings; only the strings listed here are ever built from a
file (exact match: no prefix test, no attribute walking), by `sr_lightning.archs.model_config`. Every string the
package has ever written stays listed (``Architecture.aliases``, `BLOCK_FACTORY_ALIASES`), mapped to today's class.
`tests/test_catalog.py` checks that this table and ``conf/model/*.yaml`` / ``conf/block/*.yaml`` agree.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sr_lightning.archs import efdn, fdiwn, fsrcnn, imdn, pan, rfdn, vdsr
from sr_lightning.archs.architecture import Architecture
from sr_lightning.archs.blocks import make_dbb, make_ecb, make_repvgg
from sr_lightning.archs.edbb import make_edbb

#: Every network of the package, in detection order.
ARCHITECTURES: tuple[Architecture, ...] = (
    efdn.ARCHITECTURE,
    fdiwn.ARCHITECTURE,
    fsrcnn.ARCHITECTURE,
    vdsr.ARCHITECTURE,
    imdn.ARCHITECTURE,
    rfdn.ARCHITECTURE,
    pan.ARCHITECTURE,
)

#: The ``conv3x3`` block factories a model config may name (``_partial_: true`` nodes), by today's ``_target_``.
BLOCK_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "sr_lightning.archs.edbb.make_edbb": make_edbb,
    "sr_lightning.archs.blocks.make_repvgg": make_repvgg,
    "sr_lightning.archs.blocks.make_dbb": make_dbb,
    "sr_lightning.archs.blocks.make_ecb": make_ecb,
}
#: Older ``_target_`` strings of block factories -> today's (none renamed yet).
BLOCK_FACTORY_ALIASES: dict[str, str] = {}


def architecture_by_target(target: str) -> Architecture | None:
    """The network whose ``_target_`` (today's or an alias) is exactly ``target``."""
    return next((a for a in ARCHITECTURES if target in a.targets), None)


def architecture_of(net: nn.Module | type[nn.Module]) -> Architecture | None:
    """The descriptor of ``net``'s class (exact class: a subclass is another network)."""
    cls = net if isinstance(net, type) else type(net)
    return next((a for a in ARCHITECTURES if a.cls is cls), None)


def block_factory(target: str) -> tuple[str, Callable[..., nn.Module]] | None:
    """(today's ``_target_``, factory) for a block factory named exactly ``target``."""
    target = BLOCK_FACTORY_ALIASES.get(target, target)
    factory = BLOCK_FACTORIES.get(target)
    return (target, factory) if factory is not None else None
