"""RFDN (Liu et al., ECCVW 2020; the AIM 2020 efficient-SR winner): network (RFDB, RFDN), detect (options from a
state dict) and convert (official checkpoint keys), and its `Architecture` descriptor."""

from sr_lightning.archs.architecture import Architecture
from sr_lightning.archs.rfdn.convert import convert_official, to_official
from sr_lightning.archs.rfdn.detect import TARGET, config_from_state_dict
from sr_lightning.archs.rfdn.network import RFDB, RFDN

# The official network is plain (its SRB convs are the deploy form): no training-form option to add.
ARCHITECTURE = Architecture(
    cls=RFDN,
    target=TARGET,
    config_from_state_dict=config_from_state_dict,
    convert_official=convert_official,
    to_official=to_official,
)

__all__ = ["ARCHITECTURE", "RFDB", "RFDN"]
