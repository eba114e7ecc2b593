"""The one pixel-conversion rule (sr_lightning.ops.pixels): im2uint8 rounding of the exact value, v / 255 back."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from sr_lightning.data.io import load_image
from sr_lightning.data.sample import sample_files
from sr_lightning.ops.pixels import quantize, to_float, to_uint8


def _matlab_im2uint8(x: float) -> int:
    """Exact reference: clamp, then floor(x * 255 + 1/2) on the exact (rational) value of the float x."""
    v = min(max(Fraction(x), Fraction(0)), Fraction(1))
    return math.floor(v * 255 + Fraction(1, 2))


def test_to_uint8_rounds_the_exact_value_half_away_from_zero():
    k = torch.arange(255, dtype=torch.float64)
    ties = ((k + 0.5) / 255).float()  # float32 values next to each .5 tie, on either side of it
    x = torch.cat([ties, torch.nextafter(ties, torch.zeros(())), torch.nextafter(ties, torch.ones(()))])
    x = torch.cat([x, torch.tensor([-0.2, 0.0, 1.0, 1.7]), (torch.arange(256) / 255).float()])
    expected = torch.tensor([_matlab_im2uint8(v) for v in x.tolist()], dtype=torch.uint8)
    assert torch.equal(to_uint8(x), expected)
    assert torch.equal(quantize(x), expected.double()) and quantize(x).dtype == torch.float64
    # The rule matters: a float32 product rounds x * 255 onto the tie for many of these values (then up).
    assert not torch.equal(torch.floor(x.clamp(0, 1) * 255 + 0.5).to(torch.uint8), expected)
    # float64 inputs: exact ties round up (away from zero), not to even
    assert to_uint8(torch.tensor([0.5 / 255, 2.5 / 255], dtype=torch.float64)).tolist() == [1, 3]


def test_to_float_round_trip_on_a_real_photo(tmp_path):
    levels = torch.arange(256, dtype=torch.uint8)
    f = to_float(levels)
    assert f.dtype == torch.float32 and float(f[0]) == 0.0 and float(f[-1]) == 1.0
    assert torch.equal(to_uint8(f), levels)  # every 8-bit level survives the float32 round trip
    photo = load_image(sample_files("train")[0])  # HxWx3 uint8
    np.save(tmp_path / "photo.npy", photo)
    memmap = np.load(tmp_path / "photo.npy", mmap_mode="r")  # read-only, as the disk cache serves it
    chw = memmap.transpose(2, 0, 1)[:, 10:50, 20:70]  # a strided view
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy warns on read-only memory: to_float must not
        t = to_float(chw)
    assert t.shape == (3, 40, 50) and t.dtype == torch.float32
    assert np.array_equal(to_uint8(t).numpy(), np.asarray(chw))
    t.zero_()  # the tensor owns its memory
    assert np.array_equal(np.asarray(memmap), photo)
    with pytest.raises(TypeError, match="uint8"):
        to_float(photo.astype(np.float32))
