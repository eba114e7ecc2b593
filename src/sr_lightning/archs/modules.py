"""Module-tree surgery shared by the folds (re-parameterization, weight norm)."""

from __future__ import annotations

from torch import nn

__all__ = ["replace_submodule"]


def replace_submodule(net: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` in place of the submodule of ``net`` at the dotted ``name`` (e.g. ``"body.0.conv"``); returns the
    module it replaced. The root itself (``name == ""``) cannot be replaced in place."""
    if not name:
        raise ValueError("replace_submodule cannot replace the root module itself; replace it in its parent")
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = parent.get_submodule(attr)
    setattr(parent, attr, new)
    return old
