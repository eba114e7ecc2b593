"""Official RFDN checkpoint keys (njulj/RFDN, ``RFDN.py`` / ``block.py``, ``trained_model/RFDN_AIM.pth``: 128 keys)
<-> this package's keys. The official layout is the plain (deploy) form: fold a training-form network first. Both
directions come from one list of module pairs (`sr_lightning.archs.imdn.convert.rename_modules`)."""

from __future__ import annotations

from sr_lightning.archs.keymap import StateDict, block_count, rename_modules

#: official ESA module names -> ours (`sr_lightning.archs.esa.ESA`, the same map as EFDN's), in the official order
ESA_NAMES: tuple[tuple[str, str], ...] = (
    ("conv1", "reduce"),
    ("conv_f", "skip"),
    ("conv_max", "mid1"),
    ("conv2", "down"),
    ("conv3", "mid2"),
    ("conv3_", "mid3"),
    ("conv4", "expand"),
)


def module_pairs(num_blocks: int) -> list[tuple[str, str]]:
    """(official module, our module) for an RFDN with ``num_blocks`` RFDBs (official ``B1``.. -> ``blocks.0``..)."""
    pairs = [("fea_conv", "head")]
    for i in range(num_blocks):
        theirs, ours = f"B{i + 1}", f"blocks.{i}"
        for j in range(3):
            pairs += [(f"{theirs}.c{j + 1}_d", f"{ours}.distill.{j}"), (f"{theirs}.c{j + 1}_r", f"{ours}.srb.{j}")]
        pairs += [(f"{theirs}.c4", f"{ours}.conv4"), (f"{theirs}.c5", f"{ours}.fuse")]
        pairs += [(f"{theirs}.esa.{a}", f"{ours}.esa.{b}") for a, b in ESA_NAMES]
    return pairs + [("c.0", "fuse"), ("LR_conv", "body_conv"), ("upsampler.0", "tail")]


def convert_official(state_dict: StateDict) -> StateDict:
    """Map an official RFDN state dict to our keys; ``ValueError`` on any key outside the official layout."""
    converted, unknown = rename_modules(state_dict, module_pairs(block_count(state_dict, r"B(\d+)\.")))
    if unknown or not converted:
        raise ValueError(
            f"not an official RFDN state dict: {len(unknown)} unexpected key(s), e.g. {unknown[:5]}; expected keys "
            "like 'fea_conv.weight', 'B1.c1_d.weight', 'B1.c1_r.weight', 'B1.esa.conv1.weight', 'c.0.weight', "
            "'LR_conv.weight', 'upsampler.0.weight'"
        )
    return converted


def to_official(state_dict: StateDict) -> StateDict:
    """Map our deploy-form RFDN state dict to the official keys (inverse of :func:`convert_official`); ``ValueError``
    on a key without an official counterpart, e.g. a training-form EDBB: fold it first (``archs.forms``)."""
    pairs = [(ours, theirs) for theirs, ours in module_pairs(block_count(state_dict, r"blocks\.(\d+)\."))]
    converted, unknown = rename_modules(state_dict, pairs)
    if unknown:
        raise ValueError(
            f"cannot export to the official RFDN layout: {len(unknown)} key(s) have no official counterpart, e.g. "
            f"{unknown[:5]}; the official layout is the deploy form: fold the network first "
            "(sr_lightning.archs.forms.to_deploy_form) and export its state dict"
        )
    return converted
