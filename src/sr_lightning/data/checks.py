"""The data check a run makes at setup, before any training or evaluation step.

Every file of every dataset is decoded (:func:`~sr_lightning.data.scan.scan_images`, parallel and cached), LR/HR
pairs must match the scale, and whole images fed to the network (validation, test) must not be smaller than its
``min_input_size``. What happens to a bad file depends on its role: training images follow ``on_bad_image``
(``"error"``: fail listing every bad file; ``"skip"``: warn with the files and the count, train on the rest);
validation and test images always fail, since a score over fewer images is not the benchmark's score.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from torch.utils.data import Dataset

from sr_lightning.data.datasets import SRImageDataset
from sr_lightning.data.patches import flatten_dataset
from sr_lightning.data.scan import scan_images
from sr_lightning.metrics.functional import SSIM_WIN_SIZE as SSIM_WINDOW

__all__ = ["ON_BAD_IMAGE", "BadDataError", "apply_policy", "find_bad_images"]

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("error", "skip")
TRAIN = "train"


class BadDataError(ValueError):
    """Unusable image files found by the data check; the message lists every one of them."""


def _too_small(leaf: SRImageDataset, i: int, min_size: int, net_name: str) -> str | None:
    """Why whole image ``i`` cannot be scored: LR below the network's minimum, or too little HR left for SSIM."""
    h, w = leaf.lr_size(i)
    item = leaf.items[i]
    if min(h, w) < min_size:
        what = f"{item.lr}: LR image" if item.lr is not None else f"{item.hr}: LR image (generated from this HR)"
        return (
            f"{what} is {w}x{h}, smaller than {net_name}'s minimum input of {min_size}x{min_size} pixels "
            f"({net_name}.min_input_size)"
        )
    s = leaf.scale  # the metrics shave `scale` pixels at each border, then SSIM slides an 11x11 window
    if min(h, w) * s - 2 * s < SSIM_WINDOW:
        return (
            f"{item.hr}: HR image {w * s}x{h * s} (mod-cropped) leaves {w * s - 2 * s}x{h * s - 2 * s} pixels after "
            f"the {s}-pixel border shave, fewer than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
        )
    return None


def find_bad_images(
    datasets: Mapping[str, Dataset],
    min_input_size: Mapping[str, int] | None = None,
    net_name: str = "the network",
    workers: int | None = None,
) -> dict[str, dict[int, str]]:
    """``{role: {position: problem}}`` for every role (e.g. ``"train"``, ``"val"``, ``"test[Set5]"``) of ``datasets``.

    Positions index the role's dataset (looking through ``ConcatDataset`` / ``Subset``); every problem starts with
    the offending file. ``min_input_size``: for the roles scored on whole images (validation, test), the smallest
    LR side the network accepts; their images must also keep an SSIM window after the metrics' border shave.
    Datasets that are not :class:`~sr_lightning.data.datasets.SRImageDataset` (no file list) are not checked.
    """
    flat = {role: flatten_dataset(ds) for role, ds in datasets.items()}
    leaves = {id(leaf): leaf for pairs in flat.values() for leaf, _ in pairs if isinstance(leaf, SRImageDataset)}
    files = [f for leaf in leaves.values() for f in leaf.files()]
    checks = scan_images(files, workers=workers, desc=f"checking {', '.join(flat)} images")
    problems = {key: leaf.verify(checks) for key, leaf in leaves.items()}
    minimum = dict(min_input_size or {})
    out: dict[str, dict[int, str]] = {}
    for role, pairs in flat.items():
        bad: dict[int, str] = {}
        for pos, (leaf, i) in enumerate(pairs):
            if id(leaf) not in problems:
                continue
            problem = problems[id(leaf)].get(i)
            if problem is None and role in minimum:
                problem = _too_small(leaf, i, minimum[role], net_name)
            if problem is not None:
                bad[pos] = problem
        out[role] = bad
    return out


def apply_policy(bad: Mapping[str, Mapping[int, str]], on_bad_image: str, sizes: Mapping[str, int]) -> set[int]:
    """Raise :class:`BadDataError` listing every bad file, unless the only bad files are training images and
    ``on_bad_image`` is ``"skip"``: then warn (files and count) and return the training positions to leave out.

    ``sizes``: the number of images of each role (for the messages).
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
    train_bad = dict(bad.get(TRAIN, {}))
    fatal = {role: probs for role, probs in bad.items() if probs and (role != TRAIN or on_bad_image == "error")}
    if fatal:
        # One line per file: a file in several roles (Set5 as validation and test set) is listed once.
        roles_of: dict[str, list[str]] = {}
        for role, probs in fatal.items():
            for problem in probs.values():
                roles_of.setdefault(problem, []).append(role)
        lines = [f"  [{', '.join(roles)}] {problem}" for problem, roles in roles_of.items()]
        counts = ", ".join(f"{role}: {len(probs)} of {sizes.get(role, '?')}" for role, probs in fatal.items())
        head = f"{len(lines)} unusable image file{'s' if len(lines) > 1 else ''} ({counts})"
        hint = f"Fix or remove {'it' if len(lines) == 1 else 'them'}"
        if TRAIN in fatal:
            hint += ", or set data.on_bad_image=skip to train without the bad training images"
        if any(role != TRAIN for role in fatal):
            hint += " (validation and test images must all be usable: a score over fewer images is another score)"
        if len(lines) == 1:  # one file: name it on the first line
            raise BadDataError(f"{head}: {lines[0].strip()}\n{hint}.")
        raise BadDataError(f"{head}:\n" + "\n".join(lines) + f"\n{hint}.")
    if train_bad:
        total = sizes.get(TRAIN, 0)
        if len(train_bad) >= total:
            raise BadDataError(f"all {total} training images are unusable, e.g. {next(iter(train_bad.values()))}")
        log.warning(
            "data.on_bad_image=skip: skipping %d of %d training images that cannot be used:\n%s",
            len(train_bad),
            total,
            "\n".join(f"  {p}" for p in train_bad.values()),
        )
    return set(train_bad)
