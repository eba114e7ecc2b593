"""PAN (Zhao et al., ECCVW 2020): network (PA, PAConv, SCPA, UPA, PAN), detect (options from a state dict; the x2 /
x3 scale is not in the shapes) and convert (official checkpoint keys), and its `Architecture` descriptor."""

from sr_lightning.archs.architecture import Architecture
from sr_lightning.archs.pan.convert import convert_official, to_official
from sr_lightning.archs.pan.detect import TARGET, config_from_state_dict
from sr_lightning.archs.pan.network import PAN, SCPA, UPA, PAConv, PixelAttention, upsampling_steps

# The official network is the only form (no re-parameterizable option).
ARCHITECTURE = Architecture(
    cls=PAN,
    target=TARGET,
    config_from_state_dict=config_from_state_dict,
    convert_official=convert_official,
    to_official=to_official,
)

__all__ = ["ARCHITECTURE", "PAN", "SCPA", "UPA", "PAConv", "PixelAttention", "upsampling_steps"]
