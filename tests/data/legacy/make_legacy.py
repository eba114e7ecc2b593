"""Writes the legacy files of tests/test_formats.py with the code of an OLDER commit (see README.md here).

Run from the repository root with that commit's sources first on the path, e.g.
``git worktree add /tmp/sr_old <commit>`` then ``PYTHONPATH=/tmp/sr_old/src:/tmp/sr_old/tests python
tests/data/legacy/make_legacy.py tests/data/legacy``. Tiny networks keep the files small.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import lightning as L
import torch
from _lightning_helpers import sample_datamodule
from hydra.utils import instantiate
from torch import nn

from sr_lightning.data.io import load_image
from sr_lightning.data.sample import sample_files
from sr_lightning.lightning.module import SRModule
from sr_lightning.weights import save_weights

EFDN_CFG = {
    "_target_": "sr_lightning.archs.efdn.EFDN",
    "scale": 2,
    "channels": 8,
    "num_blocks": 3,
    "esa_channels": 2,
    "conv3x3": {"_target_": "sr_lightning.archs.edbb.make_edbb", "_partial_": True, "mode": "online"},
}
FDIWN_CFG = {
    "_target_": "sr_lightning.archs.fdiwn.FDIWN",
    "scale": 2,
    "n_feats": 8,
    "num_groups": 1,
    "num_wdib": 1,
    "sa_groups": 1,
    "up_widths": [4, 4],
}
CONFIGS = {"efdn": EFDN_CFG, "fdiwn": FDIWN_CFG}


def _perturb(net: nn.Module, seed: int) -> None:
    """Move every parameter off its initial value (the learnt scalars start at 1 / 0.5 / 1e-3 otherwise)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # 16x17 uint8 crop of a real photograph shipped inside scikit-image (not stored: tests rebuild it)
    img = load_image(sample_files("train")[0])
    crop = torch.from_numpy(img[40:56, 30:47].copy()).permute(2, 0, 1)[None]
    expected: dict[str, torch.Tensor] = {}
    for name, cfg in CONFIGS.items():
        torch.manual_seed(0)
        net = instantiate(cfg)
        _perturb(net, 1)
        save_weights(net, out / f"{name}_weights.pth", {"model": cfg, "scale": 2})
        module = SRModule(net, loss=nn.L1Loss(), optimizer=partial(torch.optim.SGD, lr=1e-3), scale=2)
        module.meta = {"model": cfg, "scale": 2}  # SGD without momentum: no optimizer state, a small file
        trainer = L.Trainer(
            max_steps=1,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            default_root_dir=str(out / "_run"),
        )
        trainer.fit(module, datamodule=sample_datamodule(batch_size=2))
        trainer.save_checkpoint(out / f"{name}.ckpt")
        with torch.no_grad():  # float64: the recorded outputs depend on the weights, not on float32 rounding
            for key, source in (("weights", out / f"{name}_weights.pth"), ("ckpt", None)):
                twin = instantiate(cfg)
                if source is None:
                    twin.load_state_dict({k[4:]: v for k, v in module.state_dict().items() if k.startswith("net.")})
                else:
                    twin.load_state_dict(torch.load(source, weights_only=True)["state_dict"])
                expected[f"{name}_{key}"] = twin.double().eval()(crop.double() / 255)
    torch.save(expected, out / "expected_outputs.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
