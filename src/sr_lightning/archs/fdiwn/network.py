"""FDIWN: Feature Distillation Interaction Weighting Network (Gao et al., AAAI 2022), and FDIWN-M.

Written from the official code (IVIPLab/FDIWN, ``FDIWN_TrainCode/code/model/FDIWNx{2,3,4}.py``):

    s    = MeanShift_sub(255 x)                                   (learnt 1x1 conv, initialised to -255 * mean)
    F_0  = conv3x3(s)                                              (shallow features, 24 channels)
    T_1  = G_{t_1}(F_0),   T_j = T_{j-1} + G_{t_j}(T_{j-1})        (FSWG calls by the schedule t, shared weights)
    out  = MeanShift_add(Up_1(T_n) + Up_2(s or 255 x)) / 255       (Up = conv3x3 -> conv3x3 -> pixel shuffle)

Facts of the official code that the defaults reproduce (the paper states neither):
* three FSWGs called six times, schedule (0, 0, 1, 2, 1, 2); the global sum starts from the *first call's output*
  T_1 (the shallow features F_0 are not added back);
* the x4 model differs from the x2/x3 ones in the wide-activation expansion ratios, the upsampler widths and the
  input of the second upsampling path (mean-subtracted at x4, raw 0-255 image at x2/x3) -- see :data:`PRESETS`;
* the mean-shift convs are trainable (the official ``requires_grad = False`` is set on the module, a no-op), and
  the released ones were trained away from the DIV2K mean.

FDIWN-M (no official checkpoint): the same network with two FSWGs, schedule (0, 0, 1, 1) -- the official schedule
with every call of the third FSWG removed (parameter counts match the paper's FDIWN-M).

Input/output: RGB in [0, 1]; the official model works on 0-255 values, so the input is multiplied by
``rgb_range`` before the mean shift and the output divided by it. No clamping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from sr_lightning.archs.fdiwn.fswg import FSWG

#: official per-scale hyper-parameters; ``preset="auto"`` picks ``f"x{scale}"`` for every argument left None.
#: expansion ratios: ``wirw`` = every WIRW (official SRBW1), ``wcrw`` = the distillation WCRWs (SRBW, C/2 -> C),
#: ``scf`` = the WCRW of the self-calibration fusion (SRBW2, 2C -> C); widths of the two upsampling paths.
PRESETS: dict[str, dict[str, object]] = {
    "x2": {"expansion": {"wirw": 2.0, "wcrw": 4.0, "scf": 2.0}, "up_widths": (64, 64), "up2_input": "raw"},
    "x3": {"expansion": {"wirw": 2.0, "wcrw": 4.0, "scf": 2.0}, "up_widths": (64, 64), "up2_input": "raw"},
    "x4": {"expansion": {"wirw": 2.5, "wcrw": 4.5, "scf": 2.25}, "up_widths": (32, 32), "up2_input": "mean_sub"},
}
EXPANSION_KEYS = ("wirw", "wcrw", "scf")
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def default_schedule(num_groups: int) -> tuple[int, ...]:
    """Official call order generalised: the first FSWG twice, then the others in order, twice over.

    3 groups -> (0, 0, 1, 2, 1, 2) (official FDIWN); 2 groups -> (0, 0, 1, 1) (our FDIWN-M).
    """
    rest = tuple(range(1, num_groups))
    return (0, 0, *rest, *rest)


def _mean_shift(rgb_range: float, mean: Sequence[float], sign: float) -> nn.Conv2d:
    """1x1 conv initialised to x + sign * rgb_range * mean (official ``MeanShift`` with unit std); trainable."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * rgb_range * torch.tensor([float(m) for m in mean]))
    return conv


def _upsampler(in_channels: int, width: int, scale: int, first_bias: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=first_bias),
        nn.Conv2d(width, 3 * scale**2, 3, padding=1),
        nn.PixelShuffle(scale),
    )


class FDIWN(nn.Module):
    """FDIWN / FDIWN-M. Defaults: the official FDIWN at ``scale`` (x2 629,176; x3 646,486; x4 663,848 parameters).

    Args:
        scale: upscaling factor.
        n_feats: body width (official 24 = the code's ``n_feats=64`` times 3/8).
        num_groups: number of distinct FSWG modules (3 FDIWN, 2 FDIWN-M).
        num_wdib: WDIBs per FSWG (official 3).
        schedule: FSWG index of each call; None -> :func:`default_schedule`. Every FSWG must be called.
        expansion: ratios ``{"wirw", "wcrw", "scf"}``; missing / None entries come from the preset.
        up_widths: widths (path 1, path 2) of the two upsampling paths; None -> preset.
        up2_input: what the second upsampling path sees: ``"raw"`` (255 x) or ``"mean_sub"``; None -> preset.
        preset: ``"auto"`` (the official values of ``scale``; 2, 3, 4) or ``"x2"``, ``"x3"``, ``"x4"``.
        rgb_range: the official pixel scale (255); images are scaled by it inside the model.
        rgb_mean: initial mean of the mean-shift layers.
        shuffle_groups / sa_groups: groups of the FSWG shuffle + group conv (4) and of shuffle attention (6).

    Keys: ``sub_mean``, ``add_mean``, ``head``, ``fswg.{g}.{wdib.{k}.*, skip, fuse, residual, gain_*}``,
    ``up1.{0,1}``, ``up2.{0,1}``; ``convert.convert_official`` maps the official names onto these.
    """

    #: state-dict prefixes of the upsampling paths: re-initialised by `init_from` when the scale changes
    upsampler_prefixes: tuple[str, ...] = ("up1", "up2")
    #: smallest input side (pixels), found by running it: the forward pass works down to 1x1, but at 1x1 every
    #: feature map is one value, its spatial std (CoffConv contrast branch) is 0 and sqrt'(0) makes the training
    #: gradients NaN; 2x2 (and 1x2, 2x1) inputs train with finite gradients.
    min_input_size: int = 2

    def __init__(
        self,
        scale: int = 4,
        n_feats: int = 24,
        num_groups: int = 3,
        num_wdib: int = 3,
        schedule: Sequence[int] | None = None,
        expansion: Mapping[str, float | None] | None = None,
        up_widths: Sequence[int] | None = None,
        up2_input: str | None = None,
        preset: str = "auto",
        rgb_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_MEAN,
        shuffle_groups: int = 4,
        sa_groups: int = 6,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.rgb_range = float(rgb_range)
        self.schedule = tuple(int(g) for g in (default_schedule(num_groups) if schedule is None else schedule))
        if not self.schedule or sorted(set(self.schedule)) != list(range(num_groups)):
            raise ValueError(
                f"schedule {self.schedule} must call each of the {num_groups} FSWGs (0..{num_groups - 1}) at least once"
            )
        self.expansion, self.up_widths, self.up2_input = self._resolve(scale, preset, expansion, up_widths, up2_input)

        self.sub_mean = _mean_shift(self.rgb_range, rgb_mean, -1.0)
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.fswg = nn.ModuleList(
            FSWG(n_feats, self.expansion, num_wdib, shuffle_groups, sa_groups) for _ in range(num_groups)
        )
        self.up1 = _upsampler(n_feats, self.up_widths[0], scale, first_bias=False)
        self.up2 = _upsampler(3, self.up_widths[1], scale, first_bias=True)
        self.add_mean = _mean_shift(self.rgb_range, rgb_mean, 1.0)

    @staticmethod
    def _resolve(
        scale: int,
        preset: str,
        expansion: Mapping[str, float | None] | None,
        up_widths: Sequence[int] | None,
        up2_input: str | None,
    ) -> tuple[dict[str, float], tuple[int, int], str]:
        """Fill the arguments left None from the preset; validate."""
        given = dict(expansion or {})
        if set(given) - set(EXPANSION_KEYS):
            raise ValueError(f"expansion keys must be among {EXPANSION_KEYS}, got {sorted(given)}")
        need_preset = up_widths is None or up2_input is None or any(given.get(k) is None for k in EXPANSION_KEYS)
        name = f"x{scale}" if preset == "auto" else preset
        if need_preset and name not in PRESETS:
            raise ValueError(
                f"no official FDIWN preset {name!r} (preset={preset!r}, scale={scale}); choose one of "
                f"{sorted(PRESETS)} or give expansion, up_widths and up2_input explicitly"
            )
        base = PRESETS.get(name, {})
        exp = {k: float(given[k]) if given.get(k) is not None else base["expansion"][k] for k in EXPANSION_KEYS}
        widths = tuple(int(w) for w in (up_widths if up_widths is not None else base["up_widths"]))
        source = up2_input if up2_input is not None else base["up2_input"]
        if len(widths) != 2:
            raise ValueError(f"up_widths must hold two widths, got {widths}")
        if source not in ("raw", "mean_sub"):
            raise ValueError(f"up2_input must be 'raw' or 'mean_sub', got {source!r}")
        return exp, (widths[0], widths[1]), str(source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.rgb_range  # official 0-255 convention
        shifted = self.sub_mean(x)
        total = self.fswg[self.schedule[0]](self.head(shifted))
        for g in self.schedule[1:]:
            total = total + self.fswg[g](total)  # running sum = official y_input + up1 + ... (same order)
        up2_in = shifted if self.up2_input == "mean_sub" else x
        return self.add_mean(self.up1(total) + self.up2(up2_in)) / self.rgb_range
