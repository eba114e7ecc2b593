"""Error of each inference-time fold (archs/optimize.py) on the official x4 weights: max |folded - unfolded| on a
random input, the fold built and run in float64, and in float32 against the float64 unfolded truth (beside the
unfolded float32 block's own error, the rounding the fold competes with).

    python benchmarks/inference_folds.py --size 48x64

Rows: FDIWN's wide unit (WIRW; gains + SA shuffle), WCRW, combination coefficient, SCF, WDIB, FSWG, the ends (mean
shifts, 0-255), the whole network; EFDN's distill -> fuse, ESA, EFDB, the whole network. Last line:
``worst_float64_relative=<max error / max |output|>``.
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()

import argparse
import copy
from collections.abc import Callable

import torch
from torch import nn

from sr_lightning.archs.efdn.fast import FastEFDB, FastESA, fold_distill_fuse, fold_efdn
from sr_lightning.archs.fdiwn.fast import FastFSWG, FastSCF, FastWDIB, fold_ends, fold_fdiwn
from sr_lightning.archs.fdiwn.fast_units import FastCombinationCoefficient, FastWideUnit
from sr_lightning.inference.loading import load_model
from sr_lightning.paths import shared_dir

Fold = Callable[[nn.Module], Callable[..., torch.Tensor]]


def in_place_fold(fold: Callable[[nn.Module], object]) -> Fold:
    def apply(module: nn.Module) -> nn.Module:
        fold(module)
        return module

    return apply


def sum_of_parts(module: nn.Module) -> Callable[..., torch.Tensor]:
    parts = fold_distill_fuse(module)  # type: ignore[arg-type]
    return lambda *xs: sum(p(x) for p, x in zip(parts, xs))


def distill_fuse(module: nn.Module) -> Callable[..., torch.Tensor]:
    return lambda *xs: module.fuse(torch.cat([d(x) for d, x in zip(module.distill, xs)], 1))


def errors(module: nn.Module, fold: Fold, inputs: list[torch.Tensor], call: Fold | None = None) -> tuple[float, ...]:
    """(float64 error, float32 folded error, float32 unfolded error, max |output|)."""
    call = call or (lambda m: m)
    m64 = copy.deepcopy(module).double()
    x64 = [x.double() for x in inputs]
    with torch.no_grad():
        truth = call(m64)(*x64)
        f64 = fold(copy.deepcopy(m64))(*x64)
        f32 = fold(copy.deepcopy(module).float())(*inputs)
        u32 = call(copy.deepcopy(module).float())(*inputs)
    return tuple(float(v) for v in ((f64 - truth).abs().max(), (f32.double() - truth).abs().max(),
                                    (u32.double() - truth).abs().max(), truth.abs().max()))  # fmt: skip


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="48x64", help="input HxW of every row (LR for the whole networks)")
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    weights = shared_dir() / "weights" / "official"
    fdiwn = load_model(weights / "fdiwn_x4_official.pt", optimize=False)
    efdn = load_model(weights / "efdn_x4_official.pth", optimize=False)
    torch.manual_seed(0)
    feat = [torch.randn(1, 24, h, w) for _ in range(2)]
    efeat = [torch.randn(1, 48, h, w) for _ in range(4)]
    image = torch.rand(1, 3, h, w)
    wdib, fswg = fdiwn.fswg[0].wdib[0], fdiwn.fswg[0]
    rows = {
        "FDIWN WIRW (gains, SA shuffle -> conv)": (wdib.distil1.wirw, FastWideUnit, [feat[0]], None),
        "FDIWN WCRW (gains, shortcut conv)": (wdib.distil1.wcrw, FastWideUnit, [feat[0][:, :12]], None),
        "FDIWN combination coefficient": (wdib.cc1_f, FastCombinationCoefficient, [feat[0]], None),
        "FDIWN SCF (gains -> input channels)": (
            wdib.scf, lambda m: (lambda q, p: FastSCF(m)(torch.cat([q, p], 1), p)), feat, None),
        "FDIWN WDIB": (wdib, FastWDIB, [feat[0]], None),
        "FDIWN FSWG (gains, shuffled cat)": (fswg, FastFSWG, [feat[0]], None),
        "FDIWN ends (0-255, mean shifts)": (fdiwn, in_place_fold(fold_ends), [image], None),
        "FDIWN x4 whole (fold_fdiwn)": (fdiwn, in_place_fold(fold_fdiwn), [image], None),
        "EFDN distill -> fuse": (efdn.blocks[0], sum_of_parts, efeat, distill_fuse),
        "EFDN ESA (reduce + skip)": (efdn.blocks[0].esa, FastESA, [efeat[0]], None),
        "EFDN EFDB": (efdn.blocks[0], FastEFDB, [efeat[0]], None),
        "EFDN x4 whole (fold_efdn)": (efdn, in_place_fold(fold_efdn), [image], None),
    }  # fmt: skip
    print(f"input {h}x{w}; max |error| against the unfolded float64 output")
    print(f"{'fold':<42} {'float64':>10} {'float32 folded':>15} {'float32 unfolded':>17} {'max |y|':>9}")
    worst = 0.0
    for name, (module, fold, inputs, call) in rows.items():
        e64, f32, u32, top = errors(module, fold, inputs, call)
        worst = max(worst, e64 / top)
        print(f"{name:<42} {e64:>10.2e} {f32:>15.2e} {u32:>17.2e} {top:>9.3g}")
    print(f"worst_float64_relative={worst:.2e}")
    return worst


if __name__ == "__main__":
    main()
