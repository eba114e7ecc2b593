"""Float tolerances derived from the computation (IEEE-754 rounding), not from the machine a test ran on.

The model (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.1 inner products, §4.2 summation
in any ordering): a sum or dot product of n terms evaluated in floating point, in ANY order, with or without FMA, lies
within ``gamma(n) * sum(|terms|)`` of the exact value, with ``gamma(n) = n u / (1 - n u)`` and ``u = eps / 2`` the
unit roundoff. Two evaluations of the same reduction (two conv algorithms, batched vs single, two CPUs) therefore differ
by at most ``2 gamma(n) sum(|terms|)``. Chained linear steps add their term counts (``gamma(a) + gamma(b) +
gamma(a) gamma(b) <= gamma(a + b)``, Lemma 3.3), with ``sum(|terms|)`` taken over all paths: the same network with
every parameter, buffer and input replaced by its absolute value (``abs_copy``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

EPS32: float = torch.finfo(torch.float32).eps  # 2**-23
EPS64: float = torch.finfo(torch.float64).eps  # 2**-52

# The reference numbers are rounded to 4 decimals (+-0.5e-4), and they come from another evaluation of the same float32
# network (another device and conv algorithm): outputs that differ by float rounding flip the 8-bit quantisation of
# the pixels within rounding of a half level, which moves a set's mean PSNR by ~1e-5 dB (here, between 1 and 2 threads
# or float32 and float64 on one CPU: up to 6e-6 dB). A mean within that of a rounding boundary may round either way,
# so the check allows the last digit to differ by one.
REFERENCE_TOLERANCE: float = 1e-4


def unit_roundoff(dtype: torch.dtype = torch.float32) -> float:
    """u = eps / 2: the relative error of one correctly rounded operation."""
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype = torch.float32) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative error bound of an n-term sum or dot product."""
    nu = n * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f"n = {n} terms: n u >= 1, no bound in {dtype}")
    return nu / (1 - nu)


def two_evaluations(abs_sum: torch.Tensor | float, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor | float:
    """Largest difference of two evaluations (any orders) of the same n-term reduction with sum(|terms|) = abs_sum."""
    return 2 * gamma(n, dtype) * abs_sum


def abs_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every floating parameter and buffer replaced by its absolute value.

    For a network of convolutions / linear maps, positive scalings, paddings and ReLU-like activations, running it on
    ``x.abs()`` gives, per output, the sum of |terms| over all multiplicative paths (the ``sum(|terms|)`` above).
    """
    twin = copy.deepcopy(module)
    with torch.no_grad():
        for t in [*twin.parameters(), *twin.buffers()]:
            if t.is_floating_point():
                t.abs_()
    return twin


def assert_within(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor | float, what: str = "") -> None:
    """Elementwise |actual - expected| <= bound, reporting the worst element relative to its bound."""
    diff = (actual - expected).abs()
    bound_t = torch.as_tensor(bound, dtype=diff.dtype, device=diff.device).expand_as(diff)
    bad = diff > bound_t
    if bad.any():
        ratio = (diff / bound_t).max().item()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {diff.numel()} elements exceed the rounding bound "
            f"(worst |diff| / bound = {ratio:.3g}, max |diff| = {diff.max().item():.3g})"
        )


#: Allowed amplification of per-operation rounding through a whole nonlinear network, where no per-layer bound is
#: derived: a float32 network amplifying its rounding this much would be off by ~1e6 * 2**-24 ~ 6% and could not be
#: trained, yet in float64 it still means ~1e-10 relative. Use with float64 evaluations.
NETWORK_AMPLIFICATION: float = 1e6


def network_tolerance(reference: torch.Tensor) -> float:
    """Tolerance for two evaluations (batched vs alone, ...) of one nonlinear network: 2 amplification u max|y|."""
    return 2 * NETWORK_AMPLIFICATION * unit_roundoff(reference.dtype) * reference.abs().max().item()
