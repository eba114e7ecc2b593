"""`measure_complexity(net, scale)`: the NTIRE efficient-SR complexity figures of one network, as a flat dict.

Keys (JSON-able; `None` where a figure does not apply or was not measured):
``network, network_class, scale, form, form_detail`` -- what was measured (``form``: "deploy" or "train");
``params`` (the measured form), ``params_train``, ``params_deploy``, ``train_form_source``;
``lr_size, flops_256, activations_256, conv_calls_256`` -- NTIRE, one forward on an ``lr_size`` LR input (default
256x256; ``flops_256`` is in MACs: NTIRE's "FLOPs" count one multiply-add as one);
``hr_size, macs_720p_lr_size, macs_720p`` -- the papers' MACs for a 1280x720 output;
``weight_norm_convs, flops_256_excluding_weight_norm, macs_720p_excluding_weight_norm`` -- the same without the convs
that carry weight normalisation in the training form (FDIWN's paper MACs leave them out);
``peak_memory_bytes, peak_memory_method, peak_memory_tensors_bytes`` and ``runtime_ms_mean, runtime_ms_median,
runtime_runs, runtime_warmup, runtime_device, runtime_threads, runtime_timer, runtime_input`` (``runtime=True``);
``activations_method``, ``notes``. Conventions: `sr_lightning.profiling.counts`, `.memory`, `.timing`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from sr_lightning.archs.forms import (
    has_training_form,
    reparameterizable_blocks,
    to_deploy_form,
    training_form,
    weight_normed_convs,
)
from sr_lightning.archs.model_config import build_network
from sr_lightning.archs.optimize import is_optimized, optimize_for_inference
from sr_lightning.profiling.counts import HR_720P, count_convs, lr_size_for, macs_of, size_pair
from sr_lightning.profiling.memory import peak_memory, tensor_peak_bytes
from sr_lightning.profiling.table import format_complexity_table
from sr_lightning.profiling.timing import describe_input, lr_input, time_forward
from sr_lightning.utils.atomic import atomic_write_text
from sr_lightning.weights import count_parameters

FORMS: tuple[str, ...] = ("deploy", "train")
ACTIVATIONS_METHOD = "output elements of every nn.Conv2d / nn.ConvTranspose2d call (forward hooks; per call)"
RUNTIME_KEYS = ("peak_memory_bytes", "peak_memory_method", "peak_memory_tensors_bytes", "runtime_ms_mean",
                "runtime_ms_median", "runtime_runs", "runtime_warmup", "runtime_device", "runtime_threads",
                "runtime_timer", "runtime_input")  # fmt: skip


def describe_form(net: nn.Module, form: str) -> str:
    """``"deploy"``, or what the training form holds: its re-parameterizable blocks (type, mode) and weight norm."""
    if form == "deploy":
        return "deploy (re-parameterizable blocks folded, weight norm baked in)"
    parts = []
    blocks = [net.get_submodule(b) for b in reparameterizable_blocks(net)]
    kinds = sorted({f"{type(b).__name__} {getattr(b, 'mode', '')!r}".replace(" ''", "") for b in blocks})
    if blocks:
        parts.append(f"{len(blocks)} re-parameterizable blocks ({', '.join(kinds)})")
    if weight_normed_convs(net):
        parts.append(f"{len(weight_normed_convs(net))} weight-normalised convs")
    return "train (" + ("; ".join(parts) or "nothing to fold: same as deploy") + ")"


def measure_complexity(
    net: nn.Module,
    scale: int,
    *,
    form: str = "deploy",
    lr_size: int | tuple[int, int] = 256,
    hr_size: tuple[int, int] = HR_720P,
    runtime: bool = True,
    device: str = "auto",
    warmup: int = 5,
    runs: int = 20,
    seed: int = 0,
    train_net: nn.Module | None = None,
    name: str | None = None,
    in_channels: int = 3,
) -> dict[str, Any]:
    """Parameters, FLOPs / MACs, activations and (``runtime=True``) peak memory and runtime of ``net``.

    ``net`` may be given in either form; ``form="deploy"`` measures its folded copy, ``form="train"`` its training
    form (see :func:`training_form`; ``train_net`` supplies it when ``net`` is already folded). ``net`` itself is
    never modified. Counts run on meta-device copies; ``runtime=False`` skips memory and runtime (their keys None).

    The counts are the network's as the papers define it (deploy / training form). Where the inference-time folds
    (`archs.optimize.optimize_for_inference`) change them, ``params_inference`` and ``macs_720p_inference`` give the
    folded network's (else None); the runtime is that of the default inference path (the folded network).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    optimized = net if is_optimized(net) else None
    if optimized is not None:  # counts do not depend on weights: the deploy form rebuilt from its model config
        net = _deploy_of(optimized)
    train, source = training_form(net, train_net)
    deploy = net
    if has_training_form(net):
        deploy = copy.deepcopy(net)
        to_deploy_form(deploy)
    measured = deploy if form == "deploy" else train
    lr, hr = size_pair(lr_size), size_pair(hr_size)
    counts = count_convs(measured, lr, in_channels)
    counts_720p = count_convs(measured, lr_size_for(hr, scale), in_channels)
    blocks = reparameterizable_blocks(measured)
    report: dict[str, Any] = {
        "network": name or type(net).__name__,
        "network_class": type(net).__name__,
        "scale": int(scale),
        "form": form,
        "form_detail": describe_form(measured, form),
        "params": count_parameters(measured),
        "params_train": count_parameters(train),
        "params_deploy": count_parameters(deploy),
        "train_form_source": source,
        "lr_size": list(lr),
        "flops_256": counts.macs,
        "activations_256": counts.activations,
        "conv_calls_256": counts.conv_calls,
        "hr_size": list(hr),
        "macs_720p_lr_size": list(counts_720p.lr_size),
        "macs_720p": counts_720p.macs,
        "activations_method": ACTIVATIONS_METHOD
        + ("; each re-parameterizable block counts as one conv call (its output), its branches not" if blocks else ""),
        **_without_weight_norm(train, counts, counts_720p),
        **dict.fromkeys(RUNTIME_KEYS),
        "notes": _notes(form, blocks, source),
    }
    inference = optimized if optimized is not None else copy.deepcopy(deploy)
    optimize_for_inference(inference)
    folded = (count_parameters(inference), count_convs(inference, lr_size_for(hr, scale), in_channels).macs)
    changed = folded != (report["params_deploy"], counts_720p.macs)
    report.update(dict(zip(("params_inference", "macs_720p_inference"), folded if changed else (None, None))))
    if runtime:
        timed = measured if form == "train" else inference
        report.update(_measure_runtime(timed, lr, device, warmup, runs, seed, in_channels))
    return report


def _deploy_of(optimized: nn.Module) -> nn.Module:
    """The deploy form (unloaded) of a network `optimize_for_inference` rewrote, from the model config `load_model`
    attaches (``sr_meta``)."""
    config = (getattr(optimized, "sr_meta", None) or {}).get("model")
    if not isinstance(config, Mapping):
        raise ValueError("an optimized network without its model config: count the deploy form (optimize=False)")
    deploy = build_network(config)
    to_deploy_form(deploy)
    deploy.sr_meta = optimized.sr_meta
    return deploy


def _without_weight_norm(train: nn.Module, *counts: Any) -> dict[str, Any]:
    """MACs without the convs that are weight-normalised in the training form (same FQNs in both forms)."""
    names = weight_normed_convs(train)
    keys = ("weight_norm_convs", "flops_256_excluding_weight_norm", "macs_720p_excluding_weight_norm")
    if not names:
        return dict.fromkeys(keys)
    return dict(zip(keys, (len(names), *(c.macs - macs_of(c, names) for c in counts))))


def _notes(form: str, blocks: list[str], source: str) -> list[str]:
    notes = []
    if form == "train" and "weights not loaded" in source:
        notes.append(f"training form: {source} (counts do not depend on weight values)")
    if form == "train" and blocks:
        notes.append(
            "training form: FLOPs/MACs are those its forward runs, including the per-forward merge of the "
            "re-parameterizable blocks' kernels (input-size independent); each block is one conv call in the "
            "activations"
        )
    return notes


def _measure_runtime(
    net: nn.Module, lr: tuple[int, int], device: str, warmup: int, runs: int, seed: int, in_channels: int
) -> dict[str, Any]:
    from sr_lightning.inference.runner import pick_device

    target = pick_device(device)
    model = copy.deepcopy(net).to(target).eval()
    x = lr_input(lr, target, seed, in_channels)
    timing = time_forward(model, x, runs=runs, warmup=warmup)  # warm-up first: memory is measured warm
    peak, method = peak_memory(model, x)
    return {
        "peak_memory_bytes": peak,
        "peak_memory_method": method,
        "peak_memory_tensors_bytes": tensor_peak_bytes(model, x),
        **timing,
        "runtime_input": f"{describe_input(x, seed)}; eval mode, torch.no_grad, float32",
    }


def _json_text(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2) + "\n"


def write_complexity_json(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``report`` to ``<out_dir>/complexity.json`` (atomically) and return the path."""
    return atomic_write_text(Path(out_dir) / "complexity.json", _json_text(report))


def write_complexity_files(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``report`` as ``<out_dir>/complexity.md`` (`format_complexity_table`: the table the `complexity` entry
    point prints, with its notes) and ``<out_dir>/complexity.json``, each atomically; returns their paths. Both texts
    are made before either file is written."""
    texts = {"complexity.md": format_complexity_table([report]) + "\n", "complexity.json": _json_text(report)}
    return [atomic_write_text(Path(out_dir) / name, text) for name, text in texts.items()]
