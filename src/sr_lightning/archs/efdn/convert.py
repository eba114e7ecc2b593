"""Official EFDN checkpoint keys (icandle/EFDN, ``models/EFDN_deploy.py``) -> this package's keys.

Only the deploy form is accepted: the official training-form EDBB (``conv1x1_sbx``, ``conv1x1_3x3``, ...) must be
folded first. The official names stay as they are; only our side of the table changes when we rename.
"""

from __future__ import annotations

import re

import torch

#: (official key pattern, our key template)
OFFICIAL_KEYS: tuple[tuple[str, str], ...] = (
    (r"head\.(weight|bias)", r"head.\1"),
    (r"cells\.(\d+)\.conv1\.conv1x1\.(weight|bias)", r"blocks.\1.conv1.\2"),
    (r"cells\.(\d+)\.conv([123])\.act\.weight", r"blocks.\1.act\2.weight"),
    (r"cells\.(\d+)\.conv([23])\.rep_conv\.(weight|bias)", r"blocks.\1.conv\2.\3"),
    (r"cells\.(\d+)\.branch\.([0-3])\.(weight|bias)", r"blocks.\1.distill.\2.\3"),
    (r"cells\.(\d+)\.fuse\.(weight|bias)", r"blocks.\1.fuse.\2"),
    (r"cells\.(\d+)\.att\.conv1\.(weight|bias)", r"blocks.\1.esa.reduce.\2"),
    (r"cells\.(\d+)\.att\.conv_f\.(weight|bias)", r"blocks.\1.esa.skip.\2"),
    (r"cells\.(\d+)\.att\.conv2\.(weight|bias)", r"blocks.\1.esa.down.\2"),
    (r"cells\.(\d+)\.att\.conv_max\.(weight|bias)", r"blocks.\1.esa.mid1.\2"),
    (r"cells\.(\d+)\.att\.conv3\.(weight|bias)", r"blocks.\1.esa.mid2.\2"),
    (r"cells\.(\d+)\.att\.conv3_\.(weight|bias)", r"blocks.\1.esa.mid3.\2"),
    (r"cells\.(\d+)\.att\.conv4\.(weight|bias)", r"blocks.\1.esa.expand.\2"),
    (r"local_fuse\.(\d+)\.(weight|bias)", r"fuse.\1.\2"),
    (r"tail\.0\.(weight|bias)", r"tail.\1"),
)
_PATTERNS = [(re.compile(p), t) for p, t in OFFICIAL_KEYS]


def convert_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official EFDN deploy state dict (``EFDN_deploy``, 142 keys at x4) to our keys.

    Wrappers ("module.", "params", ...) must already be stripped. Raises ``ValueError`` on any key that is
    not part of the official deploy layout (e.g. an unfolded training-form EDBB checkpoint).
    """
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        for pattern, template in _PATTERNS:
            if pattern.fullmatch(key):
                converted[pattern.sub(template, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        hint = ""
        if any(re.search(r"\.(conv1x1_sb[xy]|conv1x1_lpl|conv1x1_3x3)\.", k) for k in unknown):
            hint = " (looks like a training-form EDBB checkpoint: fold it to the deploy form first)"
        raise ValueError(
            f"not an official EFDN deploy state dict{hint}: {len(unknown)} unexpected key(s), "
            f"e.g. {unknown[:5]}; expected keys like 'head.weight', 'cells.0.conv2.rep_conv.weight', "
            "'local_fuse.0.weight', 'tail.0.weight'"
        )
    return converted
