"""IMDN (Hui et al., ACM MM 2019; AIM 2019 efficient-SR winner): network (CCA, IMDB, IMDN), detect (options from a
state dict) and convert (official checkpoint keys), and its `Architecture` descriptor."""

from sr_lightning.archs.architecture import Architecture
from sr_lightning.archs.imdn.convert import convert_official, to_official
from sr_lightning.archs.imdn.detect import TARGET, config_from_state_dict
from sr_lightning.archs.imdn.network import IMDB, IMDN, ContrastChannelAttention, without_identity_where_widths_differ

# The official network is plain (its 3x3 convs are the deploy form): no training-form option to add.
ARCHITECTURE = Architecture(
    cls=IMDN,
    target=TARGET,
    config_from_state_dict=config_from_state_dict,
    convert_official=convert_official,
    to_official=to_official,
)

__all__ = ["ARCHITECTURE", "IMDB", "IMDN", "ContrastChannelAttention", "without_identity_where_widths_differ"]
