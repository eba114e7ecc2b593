"""EFDN (Wang, NTIRE 2022 ESR): network (EFDB, EFDN), detect (options from a state dict) and convert (official
checkpoint keys), and its `Architecture` descriptor, as for FDIWN."""

from sr_lightning.archs.architecture import EDBB_FACTORY, Architecture
from sr_lightning.archs.efdn.convert import convert_official, to_official
from sr_lightning.archs.efdn.detect import TARGET, config_from_state_dict
from sr_lightning.archs.efdn.fast import fold_efdn
from sr_lightning.archs.efdn.network import EFDB, EFDN, Conv3x3Factory, plain_conv3x3

ARCHITECTURE = Architecture(
    cls=EFDN,
    target=TARGET,
    config_from_state_dict=config_from_state_dict,
    convert_official=convert_official,
    to_official=to_official,
    inference_folds=fold_efdn,
    training_options={"conv3x3": EDBB_FACTORY},  # the official checkpoints are the deploy form (plain convs)
)

__all__ = ["ARCHITECTURE", "EFDB", "EFDN", "Conv3x3Factory", "plain_conv3x3"]
