"""`weights=<file>` alone: the network, scale and preset detected from metadata (our files) or keys and shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sr_lightning.archs.catalog import ARCHITECTURES, architecture_of
from sr_lightning.archs.forms import to_deploy_form
from sr_lightning.inference.detect import detect_model
from sr_lightning.inference.loading import load_model
from sr_lightning.weights import save_weights

LEGACY = Path(__file__).parent / "data" / "legacy"
OFFICIAL = [
    ("efdn_x2_official.pth", "EFDN", 2, {"conv3x3": None, "channels": 48}),
    ("efdn_x4_official.pth", "EFDN", 4, {"conv3x3": None, "channels": 48}),
    ("fdiwn_x2_official.pt", "FDIWN", 2, {"preset": "auto", "num_groups": 3}),
    ("fdiwn_x3_official.pt", "FDIWN", 3, {"preset": "auto", "num_groups": 3}),
    ("fdiwn_x4_official.pt", "FDIWN", 4, {"preset": "auto", "num_groups": 3}),
]


@pytest.mark.shared
@pytest.mark.parametrize(("name", "net", "scale", "expected"), OFFICIAL)
def test_official_checkpoints_are_detected(official_weights_dir, name, net, scale, expected):
    detected = detect_model(official_weights_dir / name)
    assert (detected.name, detected.scale, detected.source, detected.kind) == (net, scale, "shapes", "official")
    assert expected.items() <= detected.config.items()
    model = load_model(official_weights_dir / name)  # and it loads, folded
    assert model.scale == scale and not model.training
    assert not any("parametrizations" in k or "sobel" in k for k in model.state_dict())


def test_fdiwn_x4_preset_differs_in_shapes():
    """The x4 preset is recognised from its shapes even when the file is labelled nothing: FDIWN built at x4
    with the x2 preset is detected as preset x2, and the official x4 one as auto."""
    from sr_lightning.archs.fdiwn import FDIWN

    cfg = architecture_of(FDIWN).config_from_state_dict(FDIWN(scale=4, preset="x2").state_dict())
    assert cfg is not None and (cfg["scale"], cfg["preset"]) == (4, "x2")
    cfg = architecture_of(FDIWN).config_from_state_dict(FDIWN(scale=4, num_groups=2).state_dict())  # FDIWN-M
    assert cfg is not None and (cfg["num_groups"], cfg["preset"]) == (2, "auto")


@pytest.mark.parametrize("file", ["efdn_weights.pth", "efdn.ckpt", "fdiwn_weights.pth", "fdiwn.ckpt"])
def test_our_files_are_detected_from_their_metadata(file):
    detected = detect_model(LEGACY / file)
    assert detected.source == "metadata" and detected.scale == 2
    assert detected.kind == ("lightning" if file.endswith(".ckpt") else "sr_lightning")
    model = load_model(LEGACY / file)
    assert model.scale == 2 and tuple(model(torch.rand(1, 3, 16, 16)).shape) == (1, 3, 32, 32)


def test_training_and_deploy_form_files_without_metadata_are_detected_from_shapes(tmp_path):
    """Our key naming, no metadata (a bare save_weights): EDBB training form (branch set from the keys) and the
    folded deploy form both come back as what they are, and give the same outputs."""
    from sr_lightning.inference.detect import build_network

    config = detect_model(LEGACY / "efdn_weights.pth").config
    net = load_model(LEGACY / "efdn_weights.pth", optimize=False)
    train_form = build_network(config)
    train_form.load_state_dict(torch.load(LEGACY / "efdn_weights.pth", weights_only=True)["state_dict"], strict=False)
    save_weights(train_form, tmp_path / "train.pth")
    deploy = build_network(config)
    to_deploy_form(deploy)
    deploy.load_state_dict(net.state_dict())
    save_weights(deploy, tmp_path / "deploy.pth")
    found_train = detect_model(tmp_path / "train.pth")
    found_deploy = detect_model(tmp_path / "deploy.pth")
    assert found_train.source == found_deploy.source == "shapes"
    assert found_train.config["conv3x3"]["branches"] == list(train_form.blocks[0].conv2.branch_names)
    assert found_deploy.config["conv3x3"] is None
    assert (found_deploy.config["channels"], found_deploy.config["num_blocks"]) == (8, 3)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "deploy.pth", optimize=False)(x), net(x), rtol=0, atol=0)


def test_lightning_checkpoint_without_metadata_is_detected_from_shapes(tmp_path):
    ckpt = torch.load(LEGACY / "fdiwn.ckpt", map_location="cpu", weights_only=True)
    del ckpt["sr_meta"]
    torch.save(ckpt, tmp_path / "bare.ckpt")
    with pytest.raises(ValueError, match="no network of this package"):  # sa_groups=1, up_widths=[4, 4]: no preset
        detect_model(tmp_path / "bare.ckpt")
    meta = detect_model(LEGACY / "fdiwn.ckpt").config
    with pytest.raises(ValueError, match="does not say its scale"):
        detect_model(tmp_path / "bare.ckpt", model=meta)
    found = detect_model(tmp_path / "bare.ckpt", model=meta, scale=2)  # model= gives what shapes cannot show
    assert found.name == "FDIWN" and found.scale == 2 and found.source == "model="
    assert load_model(tmp_path / "bare.ckpt", model=meta, scale=2).scale == 2


def test_file_matching_nothing_lists_the_networks_tried(tmp_path):
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3), "conv.bias": torch.zeros(4)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no network of this package") as err:
        detect_model(tmp_path / "other.pth")
    for arch in ARCHITECTURES:
        assert arch.name in str(err.value)


@pytest.mark.shared
def test_overrides_that_contradict_the_file_fail_clearly(official_weights_dir):
    efdn = official_weights_dir / "efdn_x4_official.pth"
    with pytest.raises(ValueError, match=r"scale=3 contradicts .*x4"):
        detect_model(efdn, scale=3)
    with pytest.raises(ValueError, match=r"model=sr_lightning.archs.fdiwn.FDIWN contradicts"):
        detect_model(efdn, model={"_target_": "sr_lightning.archs.fdiwn.FDIWN"})
    agreed = detect_model(efdn, model={"_target_": "sr_lightning.archs.efdn.EFDN", "conv3x3": None}, scale=4)
    assert agreed.scale == 4


def test_package_level_api():
    import sr_lightning

    model = sr_lightning.load_model(LEGACY / "efdn_weights.pth")
    out = sr_lightning.upscale_image(model, torch.rand(3, 16, 20))
    assert out.shape == (3, 32, 40) and float(out.min()) >= 0 and float(out.max()) <= 1
