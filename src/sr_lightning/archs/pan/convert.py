"""Official PAN checkpoint keys (zhaohengyuan1/PAN, ``codes/models/archs/PAN_arch.py``; 140 keys at x2 / x3, 146 at
x4) <-> this package's keys. Both directions come from one list of module pairs
(`sr_lightning.archs.imdn.convert.rename_modules`)."""

from __future__ import annotations

from sr_lightning.archs.keymap import StateDict, block_count, rename_modules

#: official ``PAConv`` module names -> ours (`sr_lightning.archs.pan.network.PAConv`), in the official order
PACONV_NAMES: tuple[tuple[str, str], ...] = (("k2", "gate"), ("k3", "conv"), ("k4", "out"))


def module_pairs(num_blocks: int, num_steps: int) -> list[tuple[str, str]]:
    """(official module, our module) for a PAN with ``num_blocks`` SCPAs and ``num_steps`` upsampling steps (official
    ``upconv1``/``att1``/``HRconv1``, ``..2`` -> ``up.0``, ``up.1``)."""
    pairs = [("conv_first", "head")]
    for i in range(num_blocks):
        theirs, ours = f"SCPA_trunk.{i}", f"blocks.{i}"
        pairs += [(f"{theirs}.conv1_a", f"{ours}.split_a"), (f"{theirs}.conv1_b", f"{ours}.split_b")]
        pairs.append((f"{theirs}.k1.0", f"{ours}.conv_a"))
        pairs += [(f"{theirs}.PAConv.{a}", f"{ours}.pa_conv.{b}") for a, b in PACONV_NAMES]
        pairs.append((f"{theirs}.conv3", f"{ours}.fuse"))
    pairs.append(("trunk_conv", "body_conv"))
    for j in range(num_steps):
        pairs += [(f"upconv{j + 1}", f"up.{j}.conv"), (f"att{j + 1}.conv", f"up.{j}.attention.conv")]
        pairs.append((f"HRconv{j + 1}", f"up.{j}.refine"))
    return pairs + [("conv_last", "tail")]


def convert_official(state_dict: StateDict) -> StateDict:
    """Map an official PAN state dict to our keys; ``ValueError`` on any key outside the official layout."""
    pairs = module_pairs(block_count(state_dict, r"SCPA_trunk\.(\d+)\."), block_count(state_dict, r"upconv(\d+)\."))
    converted, unknown = rename_modules(state_dict, pairs)
    if unknown or not converted:
        raise ValueError(
            f"not an official PAN state dict: {len(unknown)} unexpected key(s), e.g. {unknown[:5]}; expected keys "
            "like 'conv_first.weight', 'SCPA_trunk.0.conv1_a.weight', 'SCPA_trunk.0.PAConv.k2.weight', "
            "'trunk_conv.weight', 'upconv1.weight', 'att1.conv.weight', 'HRconv1.weight', 'conv_last.weight'"
        )
    return converted


def to_official(state_dict: StateDict) -> StateDict:
    """Map our PAN state dict to the official keys (inverse of :func:`convert_official`); ``ValueError`` on a key
    without an official counterpart."""
    pairs = module_pairs(block_count(state_dict, r"blocks\.(\d+)\."), block_count(state_dict, r"up\.(\d+)\."))
    converted, unknown = rename_modules(state_dict, [(ours, theirs) for theirs, ours in pairs])
    if unknown:
        raise ValueError(
            f"cannot export to the official PAN layout: {len(unknown)} key(s) have no official counterpart, e.g. "
            f"{unknown[:5]}"
        )
    return converted
