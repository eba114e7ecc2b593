"""Official EFDN checkpoint keys (icandle/EFDN, ``models/EFDN_deploy.py``) <-> this package's keys.

Only the deploy form is accepted: the official training-form EDBB (``conv1x1_sbx``, ``conv1x1_3x3``, ...) must be
folded first. The official names stay as they are; only our side of the table changes when we rename.
:func:`to_official` is the inverse, derived from the same table.
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


_GROUP = re.compile(r"\((?!\?)[^()]*\)")  # a plain capturing group (the table nests none)
_REF = re.compile(r"\\(\d+)")  # a back-reference \k in a template
_ESCAPE = re.compile(r"\\(.)")  # an escaped literal character in a pattern


def _invert(pattern: str, template: str) -> tuple[re.Pattern[str], str]:
    """One table row turned around: (our key pattern, official key template).

    The new pattern is our template, escaped, each reference ``\\k`` replaced by the official pattern's k-th group;
    the new template is the official pattern, unescaped, each group replaced by a reference to it."""
    groups = _GROUP.findall(pattern)
    parts: list[str] = []
    seen: set[int] = set()
    pos = 0
    for m in _REF.finditer(template):
        k = int(m.group(1))
        parts.append(re.escape(template[pos : m.start()]))
        parts.append(f"(?P=g{k})" if k in seen else f"(?P<g{k}>{groups[k - 1][1:-1]})")
        seen.add(k)
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    if seen != set(range(1, len(groups) + 1)):
        raise ValueError(f"OFFICIAL_KEYS row ({pattern!r}, {template!r}) is not invertible: a group is dropped")
    pieces = _GROUP.split(pattern)  # literal text around the groups
    inverse = _ESCAPE.sub(r"\1", pieces[0])
    for k, literal in enumerate(pieces[1:], start=1):
        inverse += rf"\g<g{k}>" + _ESCAPE.sub(r"\1", literal)
    return re.compile("".join(parts)), inverse


_INVERSE = [_invert(p, t) for p, t in OFFICIAL_KEYS]


def to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map our deploy-form EFDN state dict to the official ``EFDN_deploy`` keys (inverse of :func:`convert_official`).

    Raises ``ValueError`` on any key without an official counterpart, e.g. a training-form EDBB: the official
    layout is the deploy form, so fold the network first (:func:`sr_lightning.archs.forms.to_deploy_form`).
    """
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        for pattern, template in _INVERSE:
            if m := pattern.fullmatch(key):
                converted[m.expand(template)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"cannot export to the official EFDN layout: {len(unknown)} key(s) have no official counterpart, e.g. "
            f"{unknown[:5]}; the official layout is the deploy form: fold the network first "
            "(sr_lightning.archs.forms.to_deploy_form) and export its state dict"
        )
    return converted
