"""Aligned patch cropping, augmentation and the TrainPatches wrapper, checked on real photographs."""

from __future__ import annotations

import itertools

import pytest
import torch
from _data_helpers import bicubic_u8, to_u8
from torch.utils.data import ConcatDataset, Subset

from sr_lightning.data.datasets import HRFolderDataset
from sr_lightning.data.patches import TrainPatches, flatten_dataset
from sr_lightning.data.sample import SampleImages, sample_files
from sr_lightning.data.transforms import apply_augment_pair, augment_pair, crop_pair, random_crop_pair

M = 2  # LR pixels next to a patch border that bicubic (x4: 16 HR-pixel support) computes from outside it


def _interior(t: torch.Tensor) -> torch.Tensor:
    return t[..., M:-M, M:-M].float()


def _misalignment(lr_u8: torch.Tensor, hr_u8: torch.Tensor, scale: int) -> float:
    """Max |bicubic(HR patch) - LR patch| away from the patch border: exactly 0 for an aligned crop.

    Holds for crops in the image's own orientation and after flips (MATLAB bicubic commutes with them).
    A 90-degree rotation swaps which axis MATLAB resizes (and rounds to uint8) first, which moves some values
    by a few grey levels, so rotated pairs are checked after undoing the rotation.
    """
    return float((_interior(bicubic_u8(hr_u8, scale)) - _interior(lr_u8)).abs().max())


def _undo(x: torch.Tensor, hflip: bool, vflip: bool, rot90: bool) -> torch.Tensor:
    """Inverse of apply_augment_pair's transform (flips, then counter-clockwise rotation)."""
    if rot90:
        x = torch.rot90(x, -1, dims=(-2, -1))
    if vflip:
        x = x.flip(-2)
    if hflip:
        x = x.flip(-1)
    return x


SYMMETRIES = list(itertools.product([False, True], repeat=3))


def _aligned_up_to_symmetry(lr_u8: torch.Tensor, hr_u8: torch.Tensor, scale: int) -> bool:
    """True if undoing one of the 8 symmetries, the same for both, gives an exactly aligned pair."""
    return any(_misalignment(_undo(lr_u8, *f), _undo(hr_u8, *f), scale) == 0 for f in SYMMETRIES)


@pytest.fixture(scope="module")
def astronaut():
    return HRFolderDataset(files=[sample_files("train")[0]], scale=4, cache="memory")


def test_random_crops_are_exactly_aligned(astronaut):
    lr, hr, _ = astronaut.load_pair(0)
    lr_t, hr_t = torch.from_numpy(lr.copy()).permute(2, 0, 1), torch.from_numpy(hr.copy()).permute(2, 0, 1)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        lp, hp = random_crop_pair(lr_t, hr_t, 24, 4, g)
        assert lp.shape == (3, 24, 24) and hp.shape == (3, 96, 96)
        # The official pipeline: LR = bicubic(HR); an aligned crop of it is bicubic of the HR crop.
        assert _misalignment(lp, hp, 4) == 0
    # negative control: an HR window shifted by one pixel is detected
    lp, _ = crop_pair(lr_t, hr_t, 20, 30, 24, 4)
    shifted = hr_t[:, 20 * 4 + 1 : 44 * 4 + 1, 30 * 4 : 54 * 4]
    assert _misalignment(lp, shifted, 4) > 20


@pytest.mark.parametrize("hflip,vflip,rot90", SYMMETRIES)
def test_augmentations_keep_pairs_aligned(astronaut, hflip, vflip, rot90):
    lr, hr, _ = astronaut.load_pair(0)
    lr_t, hr_t = torch.from_numpy(lr.copy()).permute(2, 0, 1), torch.from_numpy(hr.copy()).permute(2, 0, 1)
    lp, hp = crop_pair(lr_t, hr_t, 40, 70, 32, 4)
    la, ha = apply_augment_pair(lp, hp, hflip, vflip, rot90)
    if not rot90:
        assert _misalignment(la, ha, 4) == 0  # flips commute exactly with MATLAB bicubic
    assert _misalignment(_undo(la, hflip, vflip, rot90), _undo(ha, hflip, vflip, rot90), 4) == 0
    assert _aligned_up_to_symmetry(la, ha, 4)
    if hflip or vflip or rot90:
        assert not torch.equal(la, lp)
        # negative control: transforming only the HR side breaks the pair
        assert not _aligned_up_to_symmetry(lp, ha, 4)
    # crop-then-augment == augment-then-crop at the transformed position
    fa_lr, fa_hr = apply_augment_pair(lr_t, hr_t, hflip, vflip, rot90)
    h, w = lr_t.shape[-2:]
    top, left = (h - 40 - 32 if vflip else 40), (w - 70 - 32 if hflip else 70)
    if rot90:  # counter-clockwise: (row, col) -> (W - 1 - col, row)
        top, left = w - left - 32, top
    assert torch.equal(crop_pair(fa_lr, fa_hr, top, left, 32, 4)[0], la)
    assert torch.equal(crop_pair(fa_lr, fa_hr, top, left, 32, 4)[1], ha)


def test_augment_pair_draws_all_eight_symmetries(astronaut):
    lr = torch.arange(16.0).reshape(1, 4, 4)
    hr = torch.arange(64.0).reshape(1, 8, 8)
    g = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(200):
        la, ha = augment_pair(lr, hr, generator=g)
        seen.add(tuple(la.flatten().tolist()))
    assert len(seen) == 8
    assert all(augment_pair(lr, hr, False, False, False, g)[0].equal(lr) for _ in range(5))


def test_crop_errors_are_clear():
    lr, hr = torch.zeros(3, 10, 12), torch.zeros(3, 40, 48)
    with pytest.raises(ValueError, match=r"image too small for the patch: LR is 10x12.*16x16"):
        random_crop_pair(lr, hr, 16, 4)
    with pytest.raises(ValueError, match="not aligned at scale 3"):
        random_crop_pair(lr, hr, 8, 3)


def test_train_patches_shapes_alignment_and_reproducibility(astronaut):
    tp = TrainPatches(astronaut, lr_patch_size=16, scale=4, augment=True, repeat=6, seed=3)
    assert len(tp) == 6
    items = [tp[i] for i in range(len(tp))]
    for it in items:
        assert it["lr"].shape == (3, 16, 16) and it["hr"].shape == (3, 64, 64) and it["name"] == "astronaut"
        assert it["lr"].dtype == torch.float32 and 0 <= float(it["hr"].min()) <= float(it["hr"].max()) <= 1
        assert _aligned_up_to_symmetry(to_u8(it["lr"]), to_u8(it["hr"]), 4)
    again = TrainPatches(astronaut, lr_patch_size=16, scale=4, augment=True, repeat=6, seed=3)
    assert all(torch.equal(a["hr"], again[i]["hr"]) for i, a in enumerate(items))
    other = TrainPatches(astronaut, lr_patch_size=16, scale=4, augment=True, repeat=6, seed=4)
    assert not all(torch.equal(a["hr"], other[i]["hr"]) for i, a in enumerate(items))
    plain = TrainPatches(astronaut, lr_patch_size=16, scale=4, augment=False, seed=0)[0]
    assert _misalignment(to_u8(plain["lr"]), to_u8(plain["hr"]), 4) == 0


def test_train_patches_flatten_and_small_images(tmp_path):
    held = SampleImages("heldout", 2)  # chelsea 451x300, camera 512x512, coins 384x303
    both = ConcatDataset([held, Subset(held, [1])])
    assert [(d.names[i]) for d, i in flatten_dataset(both)] == ["chelsea", "camera", "coins", "camera"]
    tp = TrainPatches(both, lr_patch_size=8, scale=2, repeat=2)
    assert len(tp) == 8 and tp[7]["name"] == "camera"
    with pytest.raises(ValueError, match=r"2 of 3 training images are smaller.*chelsea \(300x450\)"):
        TrainPatches(held, lr_patch_size=160, scale=2)  # HR patch 320 > 300, 302
    skipped = TrainPatches(held, lr_patch_size=160, scale=2, small_images="skip")
    assert skipped.num_images == 1 and skipped[0]["name"] == "camera"
    assert skipped[0]["hr"].shape == (3, 320, 320)
