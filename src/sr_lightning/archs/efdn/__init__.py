"""EFDN (Wang, NTIRE 2022 ESR): network (EFDB, EFDN) and convert (official checkpoint keys), as for FDIWN."""

from sr_lightning.archs.efdn.network import EFDB, EFDN, Conv3x3Factory, plain_conv3x3

__all__ = ["EFDB", "EFDN", "Conv3x3Factory", "plain_conv3x3"]
