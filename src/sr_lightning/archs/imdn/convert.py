"""Official IMDN checkpoint keys (Zheng222/IMDN, ``model/architecture.py`` ``IMDN``) <-> this package's keys.

The released files were saved from ``DataParallel``: every key starts with ``module.``, which the weights reader
(`sr_lightning.weights_file`) strips before any converter sees it. The official layout is the plain (deploy) form:
a training-form block (EDBB in ``conv3x3``) must be folded first.

Both directions come from one list of (official module, our module) pairs per number of blocks, so they are inverse
by construction; `sr_lightning.archs.keymap.rename_modules` applies such a list (as for RFDN and PAN).
"""

from __future__ import annotations

from sr_lightning.archs.keymap import StateDict, block_count, rename_modules


def module_pairs(num_blocks: int) -> list[tuple[str, str]]:
    """(official module, our module) for an IMDN with ``num_blocks`` IMDBs (official ``IMDB1``.. -> ``blocks.0``..)."""
    pairs = [("fea_conv", "head")]
    for i in range(num_blocks):
        theirs, ours = f"IMDB{i + 1}", f"blocks.{i}"
        pairs += [(f"{theirs}.c{j}", f"{ours}.conv{j}") for j in (1, 2, 3, 4)]
        pairs += [(f"{theirs}.c5", f"{ours}.fuse"), (f"{theirs}.cca.conv_du.0", f"{ours}.cca.reduce")]
        pairs += [(f"{theirs}.cca.conv_du.2", f"{ours}.cca.expand")]
    return pairs + [("c.0", "fuse"), ("LR_conv", "body_conv"), ("upsampler.0", "tail")]


def convert_official(state_dict: StateDict) -> StateDict:
    """Map an official IMDN state dict (92 keys with 6 blocks; ``module.`` already stripped) to our keys.

    Raises ``ValueError`` on any key that is not part of the official layout."""
    converted, unknown = rename_modules(state_dict, module_pairs(block_count(state_dict, r"IMDB(\d+)\.")))
    if unknown or not converted:
        raise ValueError(
            f"not an official IMDN state dict: {len(unknown)} unexpected key(s), e.g. {unknown[:5]}; expected keys "
            "like 'fea_conv.weight', 'IMDB1.c1.weight', 'IMDB1.cca.conv_du.0.weight', 'c.0.weight', 'LR_conv.weight', "
            "'upsampler.0.weight' (a leading 'module.' is stripped when the file is read)"
        )
    return converted


def to_official(state_dict: StateDict) -> StateDict:
    """Map our deploy-form IMDN state dict to the official keys (inverse of :func:`convert_official`, without the
    ``module.`` prefix: the official ``test_IMDN.py`` strips it too). Raises ``ValueError`` on a key without an
    official counterpart, e.g. a training-form EDBB: fold the network first (``archs.forms.to_deploy_form``)."""
    pairs = [(ours, theirs) for theirs, ours in module_pairs(block_count(state_dict, r"blocks\.(\d+)\."))]
    converted, unknown = rename_modules(state_dict, pairs)
    if unknown:
        raise ValueError(
            f"cannot export to the official IMDN layout: {len(unknown)} key(s) have no official counterpart, e.g. "
            f"{unknown[:5]}; the official layout is the deploy form: fold the network first "
            "(sr_lightning.archs.forms.to_deploy_form) and export its state dict"
        )
    return converted
