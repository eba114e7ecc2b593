"""`optimize_for_inference(net)`: the default inference path of every scored or deployed run (`load_model`, the
`upscale` runner, the test loop, `benchmark`).

After `to_deploy_form`, a network's `Architecture.inference_folds` rewrites it, exactly in real arithmetic, into a
faster form (EFDN: archs/efdn/fast.py; FDIWN: archs/fdiwn/fast.py), and the whole network moves to channels_last
memory (the layout oneDNN's CPU convolutions run fastest in). Both act at run time only:

- the folded network has other state-dict keys, so it is marked (``net.sr_inference``) and the writers of weights
  files (`weights.save_weights`, the safetensors and official exporters) refuse it: files keep the deploy keys;
- the complexity report counts the network as the papers define it (`profiling` works on the deploy form);
- every official checkpoint scores its reference PSNR / SSIM to 4 decimals through it (tests/test_*_official*.py,
  tests/test_baselines.py), whole and chopped; the folds' float64 / float32 error bounds are in
  tests/test_inference_folds.py.

``optimize=False`` (`load_model`, ``inference.optimize=false`` in configs) gives the deploy form unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sr_lightning.archs.catalog import architecture_of
from sr_lightning.archs.forms import to_deploy_form

#: the attribute marking an optimized network (what `optimize_for_inference` did)
MARK = "sr_inference"


def optimize_for_inference(net: nn.Module, channels_last: bool = True) -> dict[str, int]:
    """Fold ``net`` in place into its inference form (see the module doc); returns what was done. Idempotent."""
    done = getattr(net, MARK, None)
    if done is not None:
        return dict(done)
    counts = {k: v for k, v in to_deploy_form(net).items() if v}
    arch = architecture_of(net)
    if arch is not None and arch.inference_folds is not None:
        counts.update(arch.inference_folds(net))
    if channels_last:
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        counts["channels_last"] = 1
    setattr(net, MARK, dict(counts))
    return counts


def is_optimized(net: Any) -> bool:
    """True for a network `optimize_for_inference` rewrote (its state dict is not a deploy-form one)."""
    return getattr(net, MARK, None) is not None


def refuse_optimized(net: Any, what: str) -> None:
    """Raise if ``net`` is an optimized network: ``what`` (a file writer) needs the deploy form's keys."""
    if is_optimized(net):
        raise ValueError(
            f"{what}: this network is in its inference form (optimize_for_inference: other state-dict keys); "
            "write files from the deploy form: load_model(..., optimize=False) or to_deploy_form"
        )
