"""Known SR dataset archives: download URL, where they unpack, and their size / checksums where published.

Sizes and SHA-256 of the DIV2K archives are from tensorflow/datasets
(``tensorflow_datasets/datasets/div2k/checksums.tsv``); the MD5 of ``Flickr2K.tar`` and ``benchmark.tar`` from
Coloquinte/torchSR (``torchsr/datasets/flickr2k.py``, ``benchmarks.py``). Nothing else is known about them,
so their sizes are left unset.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARCHIVES", "GROUPS", "Archive"]


@dataclass(frozen=True)
class Archive:
    """A known archive: URL, folder (relative to ``--root``) it is extracted into, and its checks if known."""

    url: str
    extract_to: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
_EDSR = "https://cv.snu.ac.kr/research/EDSR/"

ARCHIVES: dict[str, Archive] = {
    "div2k-train-hr": Archive(
        _DIV2K + "DIV2K_train_HR.zip",
        "DIV2K",
        3530603713,
        "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
    ),
    "div2k-valid-hr": Archive(
        _DIV2K + "DIV2K_valid_HR.zip",
        "DIV2K",
        448993893,
        "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
    ),
    "div2k-train-lr-x2": Archive(
        _DIV2K + "DIV2K_train_LR_bicubic_X2.zip",
        "DIV2K",
        925390592,
        "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850",
    ),
    "div2k-train-lr-x3": Archive(
        _DIV2K + "DIV2K_train_LR_bicubic_X3.zip",
        "DIV2K",
        427847282,
        "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a",
    ),
    "div2k-train-lr-x4": Archive(
        _DIV2K + "DIV2K_train_LR_bicubic_X4.zip",
        "DIV2K",
        246914039,
        "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a",
    ),
    "div2k-valid-lr-x2": Archive(
        _DIV2K + "DIV2K_valid_LR_bicubic_X2.zip",
        "DIV2K",
        117763600,
        "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57",
    ),
    "div2k-valid-lr-x3": Archive(
        _DIV2K + "DIV2K_valid_LR_bicubic_X3.zip",
        "DIV2K",
        54513392,
        "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3",
    ),
    "div2k-valid-lr-x4": Archive(
        _DIV2K + "DIV2K_valid_LR_bicubic_X4.zip",
        "DIV2K",
        31505881,
        "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553",
    ),
    # Unpacks to Flickr2K/Flickr2K_HR and Flickr2K/Flickr2K_LR_{bicubic,unknown}/X{2,3,4}.
    "flickr2k": Archive(_EDSR + "Flickr2K.tar", ".", md5="5d3f39443d5e9489bff8963f8f26cb03"),
    # EDSR benchmark (Set5, Set14, B100, Urban100 HR + LR_bicubic); unpacks to benchmark/<Set>/...
    "benchmark": Archive(_EDSR + "benchmark.tar", ".", md5="4ace41d33c2384b97e6b320cd0afd6ba"),
}

GROUPS: dict[str, list[str]] = {
    "div2k": ["div2k-train-hr", "div2k-valid-hr"]
    + [f"div2k-{split}-lr-x{s}" for split in ("train", "valid") for s in (2, 3, 4)],
    **{
        f"div2k-x{s}": ["div2k-train-hr", "div2k-valid-hr", f"div2k-train-lr-x{s}", f"div2k-valid-lr-x{s}"]
        for s in (2, 3, 4)
    },
}
