"""FDIWN (Gao et al., AAAI 2022) and FDIWN-M, one small module per building block.

attention (shuffle attention), units (Gain, WIRW / WCRW), scf (combination coefficients, self-calibration fusion),
wdib (WDIB), fswg (FSWG), network (FDIWN), convert (official checkpoint keys).
"""

from sr_lightning.archs.fdiwn.network import FDIWN, PRESETS, default_schedule

__all__ = ["FDIWN", "PRESETS", "default_schedule"]
