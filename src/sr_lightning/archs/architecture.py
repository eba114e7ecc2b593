"""What each network tells the loaders about itself: one `Architecture` per network (spandrel's descriptor).

A network package defines its descriptor beside its class (``ARCHITECTURE`` in ``archs/<net>/__init__.py`` or at the
end of a one-file network); `sr_lightning.archs.catalog` lists them all in one explicit tuple. Detection, key
conversion and the safe reading of model configs from files (`sr_lightning.archs.model_config`) use that tuple only:
nothing is found by scanning configs or walking module attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """A network of this package.

    Attributes:
        cls: the network class.
        target: the Hydra ``_target_`` of ``conf/model/<name>.yaml`` (today's dotted name of ``cls``).
        aliases: every other ``_target_`` string this package ever wrote into a file for ``cls`` (kept forever, so
            old files keep loading after a refactor moves the class).
        config_from_state_dict: reads the constructor options back from a state dict in our key naming (official
            files are converted first); None when the state dict is not this network.
        convert_official: the official checkpoint's keys -> ours (ValueError on a foreign key).
        to_official: ours -> the official keys.
        training_options: the constructor options (over the detected ones, where those are null) that give the
            training form of a network detected in its deploy form (EFDN's EDBBs, say); its packaged config's.
        inference_folds: folds a deploy-form network in place into its faster inference form (same function in
            real arithmetic, other state-dict keys) and says what it folded; `sr_lightning.archs.optimize` calls it.
    """

    cls: type[nn.Module]
    target: str
    aliases: tuple[str, ...] = ()
    config_from_state_dict: Callable[[StateDict], dict[str, Any] | None] | None = None
    convert_official: Callable[[StateDict], StateDict] | None = None
    to_official: Callable[[StateDict], StateDict] | None = None
    training_options: Mapping[str, Any] = field(default_factory=dict)
    inference_folds: Callable[[nn.Module], dict[str, int]] | None = None

    @property
    def name(self) -> str:
        """The class name, e.g. ``EFDN``."""
        return self.cls.__name__

    @property
    def targets(self) -> tuple[str, ...]:
        """``target`` and its aliases."""
        return (self.target, *self.aliases)


#: The seven-branch EDBB factory in online mode: the training form of every network with a ``conv3x3`` option
#: (conf/model/{efdn,fsrcnn,vdsr}.yaml).
EDBB_FACTORY: Mapping[str, Any] = {
    "_target_": "sr_lightning.archs.edbb.make_edbb",
    "_partial_": True,
    "branches": ["conv3x3", "conv1x1", "identity", "expand", "sobel_x", "sobel_y", "laplacian"],
    "expand_ratio": 2.0,
    "mode": "online",
}
