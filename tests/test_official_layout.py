"""Export in the official key layout (``to_official``, the inverse of ``convert_official``) for EFDN and FDIWN:
the five official checkpoints come back key for key and tensor for tensor."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from sr_lightning.archs.catalog import architecture_of
from sr_lightning.archs.edbb import make_edbb
from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.fdiwn import FDIWN
from sr_lightning.archs.forms import to_deploy_form
from sr_lightning.weights import load_weights, read_state_dict

CHECKPOINTS = [
    ("efdn_x2_official.pth", EFDN, 2),
    ("efdn_x4_official.pth", EFDN, 4),
    ("fdiwn_x2_official.pt", FDIWN, 2),
    ("fdiwn_x3_official.pt", FDIWN, 3),
    ("fdiwn_x4_official.pt", FDIWN, 4),
]


def _build(cls: type[nn.Module], scale: int) -> nn.Module:
    """The network the official file loads into: EFDN in the deploy form, FDIWN in the (weight-normed) training form."""
    return EFDN(scale=scale, conv3x3=None) if cls is EFDN else FDIWN(scale=scale)


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want), (sorted(set(got) - set(want))[:5], sorted(set(want) - set(got))[:5])
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert torch.equal(got[key], value), key


@pytest.mark.shared
@pytest.mark.parametrize(("name", "cls", "scale"), CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_export_gives_the_official_state_dict_back(
    official_weights_dir: Path, name: str, cls: type[nn.Module], scale: int
) -> None:
    official, kind = read_state_dict(official_weights_dir / name)
    assert kind == "official"
    net = _build(cls, scale)
    assert load_weights(net, official_weights_dir / name) == "official"
    exported = architecture_of(cls).to_official(net.state_dict())
    _assert_same(exported, official)
    if cls is FDIWN:
        assert sum(k.endswith(".weight_g") for k in exported) == 198  # the legacy weight-norm names
    # ... and it loads back strictly into a fresh network, giving the same tensors
    fresh = _build(cls, scale)
    fresh.load_state_dict(architecture_of(cls).convert_official(exported), strict=True)
    _assert_same(fresh.state_dict(), net.state_dict())


@pytest.mark.shared
def test_folded_training_form_efdn_exports(official_weights_dir: Path) -> None:
    """A training-form EFDN (EDBB convs) exports once folded: the official deploy keys and shapes."""
    official, _ = read_state_dict(official_weights_dir / "efdn_x4_official.pth")
    net = EFDN(scale=4, conv3x3=functools.partial(make_edbb, mode="online"))
    assert to_deploy_form(net)["reparameterized"] == 8
    exported = architecture_of(EFDN).to_official(net.state_dict())
    assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in official.items()}


def test_training_form_efdn_must_be_folded_first() -> None:
    net = EFDN(scale=4, conv3x3=functools.partial(make_edbb, mode="online"))
    assert any(".conv2." in k and k.endswith("sobel_x.gain") for k in net.state_dict())
    with pytest.raises(ValueError, match=r"deploy form: fold .*to_deploy_form"):
        architecture_of(EFDN).to_official(net.state_dict())


def test_efdn_unknown_key_is_rejected() -> None:
    sd = EFDN(scale=2, conv3x3=None).state_dict()
    with pytest.raises(ValueError, match="no official counterpart"):
        architecture_of(EFDN).to_official({**sd, "blocks.0.extra.weight": torch.zeros(1)})


def test_folded_fdiwn_cannot_be_exported() -> None:
    net = FDIWN(scale=2)
    assert to_deploy_form(net)["weight_norm"] == 198
    with pytest.raises(ValueError, match="training form"):
        architecture_of(FDIWN).to_official(net.state_dict())


def test_fdiwn_key_outside_the_official_layout_is_rejected() -> None:
    sd = FDIWN(scale=4).state_dict()
    # fswg.0.fuse.{0,1} are the official Li1.conv{1,2}; fuse.2 would be a conv3 the official walk does not know
    with pytest.raises(ValueError, match="without an official counterpart"):
        architecture_of(FDIWN).to_official({**sd, "fswg.0.fuse.2.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="without an official counterpart"):
        architecture_of(FDIWN).to_official({})
