"""`format_complexity_table(reports)`: a Markdown table of `measure_complexity` reports, one column per report, one
row per figure, every figure labelled with its convention; notes on how things were counted follow the table."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Report = dict[str, Any]


def _common(reports: list[Report], key: str) -> Any:
    """The value of ``key`` shared by all reports that have one (not None), else None."""
    given = [r[key] for r in reports if r.get(key) is not None]
    return given[0] if given and len({json.dumps(v, sort_keys=True) for v in given}) == 1 else None


def _size(size: Any) -> str:
    return "x".join(str(n) for n in size) if size else "?"


def _giga(value: Any) -> str:
    return "-" if value is None else f"{value / 1e9:.2f} G"


def _count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _activations(r: Report) -> str:
    return f"{r['activations_256'] / 1e6:.2f} M ({r['conv_calls_256']} conv calls)"


def _runtime(r: Report) -> str:
    if r.get("runtime_ms_mean") is None:
        return "-"
    return f"{r['runtime_ms_mean']:.1f} / {r['runtime_ms_median']:.1f} ms"


def _runtime_label(reports: list[Report], lr: str) -> str:
    device, threads, runs = (_common(reports, k) for k in ("runtime_device", "runtime_threads", "runtime_runs"))
    if not any(r.get("runtime_ms_mean") is not None for r in reports):
        return "Runtime (not measured)"
    where = device.split(" (")[0].upper() if device else "device per column"
    if device == "cpu":
        where += f", {threads} threads" if threads else ", threads per column"
    return f"Runtime ({where}, mean / median of {runs or 'N'}, {lr} LR)"


def _memory_label(reports: list[Report], lr: str) -> str:
    method = _common(reports, "peak_memory_method")
    if not any(r.get("peak_memory_method") for r in reports):
        return "Peak memory (not measured)"
    return f"Peak memory ({method.split(' (')[0] if method else 'method in the notes'}, {lr} LR)"


def format_complexity_table(reports: list[Report]) -> str:
    """Markdown: the figures of each report (a column each, headed ``<network> x<scale> (<form>)``), then notes."""
    if not reports:
        raise ValueError("no report to format")
    lr_size, hr_size = _common(reports, "lr_size"), _common(reports, "hr_size")
    lr = _size(lr_size) if lr_size else "per-column"
    hr = _size(hr_size[::-1]) if hr_size else "per-column"  # the papers write width x height: 1280x720
    rows: list[tuple[str, Callable[[Report], str]]] = [
        ("Parameters (the measured form)", lambda r: _count(r["params"])),
        ("Parameters, training form", lambda r: _count(r["params_train"])),
        ("Parameters, deploy form", lambda r: _count(r["params_deploy"])),
        (f"FLOPs (NTIRE: MACs, {lr} LR)", lambda r: _giga(r["flops_256"])),
        (f"FLOPs without weight-normalised convs (NTIRE: MACs, {lr} LR)",
         lambda r: _giga(r["flops_256_excluding_weight_norm"])),
        (f"Activations (NTIRE: conv outputs, {lr} LR)", _activations),
        (f"MACs (papers: {hr} output)", lambda r: _giga(r["macs_720p"])),
        (f"MACs without weight-normalised convs (papers: {hr} output)",
         lambda r: _giga(r["macs_720p_excluding_weight_norm"])),
        ("Parameters, inference form (exact folds; - where unchanged)", lambda r: _count(r.get("params_inference"))),
        (f"MACs, inference form (exact folds; {hr} output)", lambda r: _giga(r.get("macs_720p_inference"))),
        (_memory_label(reports, lr), lambda r: _mib(r.get("peak_memory_bytes"))),
        (f"Peak memory, live tensors only (weights + input + op outputs, {lr} LR)",
         lambda r: _mib(r.get("peak_memory_tensors_bytes"))),
        (_runtime_label(reports, lr), _runtime),
    ]  # fmt: skip
    heads = [f"{r['network']} x{r['scale']} ({r['form']})" for r in reports]
    lines = ["| Figure | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(reports)]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in reports) + " |" for label, cell in rows]
    return "\n".join(lines + [""] + [f"- {note}" for note in _notes(reports, heads)])


def _notes(reports: list[Report], heads: list[str]) -> list[str]:
    notes = ["FLOPs / MACs: one multiply-add = one operation (torch FlopCounterMode / 2; convs and matmuls, no "
             "element-wise ops), on meta-device copies"]  # fmt: skip
    sizes = ", ".join(f"{h}: LR {_size(r['macs_720p_lr_size'])}" for h, r in zip(heads, reports))
    notes.append(f"1280x720 output from the LR input {sizes} (sizes floored)")
    for head, r in zip(heads, reports):
        notes.append(f"{head}: {r['form_detail']}; activations: {r['activations_method']}")
        if r.get("weights"):
            notes.append(f"{head}: weights {r['weights']}")
        notes += [f"{head}: {note}" for note in r.get("notes", [])]
        if r.get("weight_norm_convs"):
            notes.append(f"{head}: {r['weight_norm_convs']} weight-normalised convs (training form) left out of the "
                         "'without weight-normalised convs' rows, every call of them")  # fmt: skip
    memory = {r["peak_memory_method"] for r in reports if r.get("peak_memory_method")}
    notes += [f"peak memory: {m}" for m in sorted(memory)]
    inputs = {r["runtime_input"] for r in reports if r.get("runtime_input")}
    notes += [f"runtime input: {i}" for i in sorted(inputs)]
    if any(r.get("runtime_ms_mean") is not None and r["form"] == "deploy" for r in reports):
        notes.append("runtime of a deploy-form column: the default inference path (archs/optimize.py: the exact "
                     "folds, the inference-form rows)")  # fmt: skip
    return notes
