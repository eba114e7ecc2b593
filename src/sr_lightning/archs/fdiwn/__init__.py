"""FDIWN (Gao et al., AAAI 2022) and FDIWN-M, one small module per building block.

attention (shuffle attention), units (Gain, WIRW / WCRW), scf (combination coefficients, self-calibration fusion),
wdib (WDIB), fswg (FSWG), network (FDIWN), detect (options from a state dict), convert (official checkpoint keys);
`ARCHITECTURE` describes the network to the loaders.
"""

from sr_lightning.archs.architecture import Architecture
from sr_lightning.archs.fdiwn.convert import convert_official, to_official
from sr_lightning.archs.fdiwn.detect import TARGET, config_from_state_dict
from sr_lightning.archs.fdiwn.fast import fold_fdiwn
from sr_lightning.archs.fdiwn.network import FDIWN, PRESETS, default_schedule

# The training form is the constructor's (weight-normalised convs): no option to add.
ARCHITECTURE = Architecture(
    cls=FDIWN,
    target=TARGET,
    config_from_state_dict=config_from_state_dict,
    convert_official=convert_official,
    to_official=to_official,
    inference_folds=fold_fdiwn,
)

__all__ = ["ARCHITECTURE", "FDIWN", "PRESETS", "default_schedule"]
