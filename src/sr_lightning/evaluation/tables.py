"""The benchmark's tables: the EFDN paper's Table 4 layout, a long table with cost columns, per-image scores.

- ``table4.md``: rows set x scale, one column per method headed "<method>, deploy form: <params> params, <MACs> MACs",
  MATLAB bicubic first, cells "PSNR/SSIM" (the papers' Y-channel metric), best **bold** and second best
  <u>underlined</u> (PSNR and SSIM apart, among the methods, as the papers mark them); a second block for the NTIRE RGB
  PSNR when it was scored. Then one section per `Layout` of the run's config (``layouts``): a chosen subset of
  methods and scales in one of three layouts -- ``columns`` (the EFDN paper's Table 4), ``rows`` (the FDIWN paper's
  Table 4: a row per method and scale with its params and MACs) or ``efficiency`` (the NTIRE challenge's / EFDN
  Table 1's complexity columns). A method or scale without weights in the run shows "–": every cell is measured by
  this run.
- ``table.csv`` / ``table.md``: one row per method and scale: every set's scores, then the complexity columns
  (deploy-form params, NTIRE FLOPs and activations at 256x256 LR, MACs for a 1280x720 output, runtime and peak memory
  here).
- ``per_image.csv``: every image's scores; ``table.json``: all of it, with the conventions spelled out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sr_lightning.evaluation.runs import MethodResult
from sr_lightning.utils.atomic import atomic_write_text

#: what each score column means (written into table.json and under the Markdown tables)
CONVENTIONS = {
    "psnr": "Y-PSNR (dB), papers' MATLAB protocol: uint8 rounding, BT.601 Y, `scale` border pixels shaved",
    "ssim": "Y-SSIM, papers' MATLAB protocol: 11x11 Gaussian window (sigma 1.5), 'valid' filtering, same shave",
    "psnr_rgb": "RGB PSNR (dB), NTIRE efficient-SR challenge: uint8 RGB, 4 border pixels at every scale",
    "params": "parameters of the deploy form (re-parameterizable blocks folded, weight norm baked in)",
    "macs_720p": "multiply-accumulates of one forward pass producing a 1280x720 image (papers' convention)",
    "flops_256": "FLOPs, NTIRE convention (1 multiply-add = 1 FLOP) for a 256x256 LR input",
    "activations_256": "sum of conv output elements for a 256x256 LR input (NTIRE definition)",
    "runtime_ms_median": "median ms of one forward pass on a 256x256 LR input on this machine (complexity.runtime)",
    "peak_memory_bytes": "peak bytes of one forward pass on a 256x256 LR input on this machine (complexity.runtime; "
    "GPU: max_memory_allocated, CPU: allocator events, see sr_lightning.profiling.memory)",
    "passes": "forward passes per image: the cost columns are per pass (x8 ensemble: 8 passes, plus flips)",
}
COST_KEYS = (
    "params_deploy",
    "macs_720p",
    "flops_256",
    "activations_256",
    "conv_calls_256",
    "runtime_ms_median",
    "runtime_device",
    "peak_memory_bytes",
)
#: a cell with no score: the method has no weights at that scale in this run (never filled from elsewhere)
NO_WEIGHTS = "–"
LAYOUT_KINDS = ("columns", "rows", "efficiency")
LAYOUT_KEYS = ("title", "kind", "methods", "scales", "bicubic", "notes")


@dataclass(frozen=True)
class LayoutMethod:
    """A method of a layout: a column label of the run (``Method.column``), and a footnote about it."""

    label: str
    note: str | None = None


@dataclass(frozen=True)
class Layout:
    """A comparison table of the run's scores: which methods and scales, in which of `LAYOUT_KINDS`.

    ``methods=None`` takes every column of the run, ``scales=None`` every scale; ``bicubic`` adds the MATLAB-bicubic
    column (``columns`` kind). A method absent from the run keeps its place, its cells "–".
    """

    title: str
    kind: str = "columns"
    methods: tuple[LayoutMethod, ...] | None = None
    scales: tuple[int, ...] | None = None
    bicubic: bool = True
    notes: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, node: Mapping[str, Any], index: int = 0) -> Layout:
        """A layout from its config entry (plain values); errors name ``layouts[<index>]`` and the key."""
        where = f"layouts[{index}]"
        if not isinstance(node, Mapping):
            raise ValueError(f"{where}: a layout is a mapping with keys {', '.join(LAYOUT_KEYS)}, got {node!r}")
        unknown = sorted(str(k) for k in node if k not in LAYOUT_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; a layout takes {', '.join(LAYOUT_KEYS)}")
        if not isinstance(node.get("title"), str) or not node["title"].strip():
            raise ValueError(f"{where}: `title` (a non-empty string) is required")
        kind = node.get("kind", "columns")
        if kind not in LAYOUT_KINDS:
            raise ValueError(f"{where}: kind={kind!r}; choose one of {', '.join(LAYOUT_KINDS)}")
        methods = node.get("methods")
        if methods is not None and not isinstance(methods, (list, tuple)):
            raise ValueError(f"{where}: `methods` must be a list of column labels, got {methods!r}")
        if methods is not None:
            methods = tuple(_layout_method(m, f"{where}.methods[{i}]") for i, m in enumerate(methods))
        scales = node.get("scales")
        if scales is not None and (
            not isinstance(scales, (list, tuple))
            or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in scales)
        ):
            raise ValueError(f"{where}: `scales` must be a list of positive integers, got {scales!r}")
        notes = node.get("notes") or ()
        if isinstance(notes, str) or not all(isinstance(n, str) for n in notes):
            raise ValueError(f"{where}: `notes` must be a list of strings, got {notes!r}")
        return cls(
            title=node["title"],
            kind=kind,
            methods=methods,
            scales=None if scales is None else tuple(scales),
            bicubic=bool(node.get("bicubic", True)),
            notes=tuple(notes),
        )


def _layout_method(entry: Any, where: str) -> LayoutMethod:
    if isinstance(entry, str) and entry.strip():
        return LayoutMethod(entry)
    if isinstance(entry, Mapping) and set(entry) <= {"label", "note"} and isinstance(entry.get("label"), str):
        note = entry.get("note")
        if note is None or isinstance(note, str):
            return LayoutMethod(entry["label"], note)
    raise ValueError(f"{where}: a method is a column label or {{label: <column>, note: <text>}}, got {entry!r}")


@dataclass
class BenchmarkTable:
    """Everything a benchmark run measured. ``complexity`` is keyed by (label, scale)."""

    results: list[MethodResult]
    set_names: list[str]
    missing_sets: list[str] = field(default_factory=list)
    complexity: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    psnr_decimals: int = 2

    @property
    def scales(self) -> list[int]:
        return sorted({r.method.scale for r in self.results})

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(r.method.column for r in self.results))

    def result(self, column: str, scale: int) -> MethodResult | None:
        return next((r for r in self.results if r.method.column == column and r.method.scale == scale), None)

    def bicubic(self, set_name: str, scale: int) -> dict[str, float]:
        """MATLAB-bicubic scores of `set_name` at `scale` (the same for every method of that scale)."""
        for r in self.results:
            row = r.sets.get(set_name, {})
            if r.method.scale == scale and "bicubic_psnr" in row:
                return {k[len("bicubic_") :]: v for k, v in row.items() if k.startswith("bicubic_")}
        return {}

    def cost(self, column: str, scale: int) -> dict[str, Any]:
        r = self.result(column, scale)
        return self.complexity.get((r.method.label, scale), {}) if r else {}


def _si(value: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.1f}{suffix}{unit}"
    return f"{value:g}{unit}"


def _header(table: BenchmarkTable, column: str, scales: Sequence[int] | None = None) -> str:
    """ "<method>, deploy form: <params> params, <MACs> MACs" at the largest scale (of `scales`) the method was run at
    (the paper's Table 4 gives x4). The form is named: a training-form file has more parameters (FDIWN x4: 663,848 as
    trained, 657,080 deployed)."""
    run_at = [s for s in (scales or table.scales) if table.result(column, s)]
    if not run_at:
        return f"{column} (no weights)"
    scale = max(run_at)
    cost = table.cost(column, scale)
    if "params_deploy" not in cost:
        return column
    runs = 8 if table.result(column, scale).method.variant.ensemble else 1  # type: ignore[union-attr]
    return f"{column}, deploy form: {_si(cost['params_deploy'])} params, {_si(cost['macs_720p'] * runs)} MACs"


def _ranks(values: Sequence[float | None], decimals: int) -> list[int]:
    """1 for the best, 2 for the second best of the printed values (ties share a rank; higher is better), else 0.
    Nothing is ranked when fewer than two values were measured."""
    printed = [None if v is None else round(float(v), decimals) for v in values]
    distinct = sorted({v for v in printed if v is not None}, reverse=True)
    if sum(v is not None for v in printed) < 2:
        return [0] * len(values)
    return [0 if v is None or distinct.index(v) > 1 else distinct.index(v) + 1 for v in printed]


def _mark(text: str, rank: int) -> str:
    """Best **bold**, second best <u>underlined</u> (the papers' marks; Markdown has no underline of its own)."""
    return f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text


def _compared(found: Sequence[MethodResult | None], set_name: str) -> bool:
    """Marks only where two networks or more (labels) were scored: one network's variants (chop, x8 ensemble) do
    not make a comparison of methods, and a plain one-file run keeps its unmarked Table-4 line."""
    return len({r.method.label for r in found if r is not None and set_name in r.sets}) >= 2


def _score_cells(rows: Sequence[Mapping[str, Any] | None], key: str, decimals: int, marks: bool) -> list[str]:
    """One cell per row: "PSNR/SSIM" (``key="psnr"``) or the NTIRE RGB PSNR; PSNR and SSIM ranked apart."""
    present = [row if row and key in row else None for row in rows]
    psnr_ranks = _ranks([r[key] if r else None for r in present], decimals) if marks else [0] * len(rows)
    ssim_ranks = [0] * len(rows)
    if marks and key == "psnr":
        ssim_ranks = _ranks([r["ssim"] if r else None for r in present], 4)
    cells = []
    for row, pr, sr in zip(present, psnr_ranks, ssim_ranks, strict=True):
        if row is None:
            cells.append(NO_WEIGHTS)
            continue
        text = _mark(f"{row[key]:.{decimals}f}", pr)
        cells.append(text + "/" + _mark(f"{row['ssim']:.4f}", sr) if key == "psnr" else text)
    return cells


def _layout_methods(table: BenchmarkTable, layout: Layout | None) -> list[LayoutMethod]:
    return list(layout.methods) if layout and layout.methods is not None else [LayoutMethod(c) for c in table.columns]


def _layout_scales(table: BenchmarkTable, layout: Layout | None) -> list[int]:
    return list(layout.scales) if layout and layout.scales is not None else table.scales


def _footnotes(methods: Sequence[LayoutMethod]) -> tuple[dict[str, str], list[str]]:
    """Label -> label with its footnote marker, and the footnotes ("[1] PAN: not in ...")."""
    shown, notes = {}, []
    for m in methods:
        shown[m.label] = m.label
        if m.note:
            notes.append(f"[{len(notes) + 1}] {m.label}: {m.note}")
            shown[m.label] = f"{m.label} [{len(notes)}]"
    return shown, notes


def _absent_note(table: BenchmarkTable, methods: Sequence[LayoutMethod], scales: Sequence[int]) -> list[str]:
    """Which cells are "–" and why: a method, or a scale of it, without weights in this run."""
    notes = []
    for m in methods:
        missing = [s for s in scales if table.result(m.label, s) is None]
        if len(missing) == len(scales):
            notes.append(f"{m.label}: no weights in this run ({NO_WEIGHTS} everywhere).")
        elif missing:
            notes.append(f"{m.label}: no weights at {', '.join(f'x{s}' for s in missing)} in this run ({NO_WEIGHTS}).")
    return notes


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str] = ()) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    return text + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")


def _common_notes(table: BenchmarkTable, layout: Layout | None) -> list[str]:
    notes = list(layout.notes) if layout else []
    if table.missing_sets:
        notes.append(f"Missing (not evaluated): {', '.join(table.missing_sets)}.")
    return notes


def table4_markdown(table: BenchmarkTable, key: str = "psnr", layout: Layout | None = None) -> str:
    """Table 4 of the EFDN paper: rows set x scale, MATLAB bicubic first, one column per method ("PSNR/SSIM"), best
    and second best marked among the methods. ``key="psnr_rgb"`` gives the NTIRE RGB PSNR block instead (no SSIM).
    ``layout`` (kind ``columns``) picks the methods, scales and bicubic column; by default every one of the run."""
    methods, scales = _layout_methods(table, layout), _layout_scales(table, layout)
    bicubic = layout.bicubic if layout else True
    shown, footnotes = _footnotes(methods)
    header = ["Dataset", "Scale", *(["Bicubic"] if bicubic else [])]
    header += [_header(table, m.label, scales).replace(m.label, shown[m.label], 1) for m in methods]
    decimals = table.psnr_decimals
    rows = []
    for name in table.set_names:
        for scale in scales:
            found = [table.result(m.label, scale) for m in methods]
            scored = [r.sets.get(name) if r else None for r in found]
            cells = _score_cells(scored, key, decimals, marks=_compared(found, name))
            if bicubic:
                cells = _score_cells([table.bicubic(name, scale) or None], key, decimals, marks=False) + cells
            rows.append([name, f"x{scale}", *cells])
    macs_note = (
        "Params and MACs in the headers: the deploy form (re-parameterizable blocks folded, weight norm baked in) at "
        "the method's largest scale; MACs for a 1280x720 output"
    )
    notes = [CONVENTIONS[key], macs_note + " (x8 ensemble: 8 passes)."]
    notes.append(
        "Best **bold**, second best <u>underlined</u> among the methods (PSNR and SSIM apart, as printed; where two "
        "networks or more were scored)."
    )
    notes += footnotes + (_absent_note(table, methods, scales) if layout else []) + _common_notes(table, layout)
    return _markdown(header, rows, notes)


def comparison_rows_markdown(table: BenchmarkTable, layout: Layout, key: str = "psnr") -> str:
    """The FDIWN paper's Table 4 layout: a row per scale and method (grouped by scale) with that file's deploy-form
    params and MACs for a 1280x720 output, then "PSNR/SSIM" per set; marks within each scale's group."""
    methods, scales = _layout_methods(table, layout), _layout_scales(table, layout)
    shown, footnotes = _footnotes(methods)
    header = ["Method", "Scale", "Params (deploy form)", "MACs (1280x720 output)", *table.set_names]
    rows = []
    for scale in scales:
        found = [table.result(m.label, scale) for m in methods]
        per_set = [
            _score_cells(
                [r.sets.get(name) if r else None for r in found], key, table.psnr_decimals, _compared(found, name)
            )
            for name in table.set_names
        ]
        for i, (m, r) in enumerate(zip(methods, found, strict=True)):
            costs = [NO_WEIGHTS, NO_WEIGHTS]
            if r is not None:
                cost, runs = table.cost(m.label, scale), 8 if r.method.variant.ensemble else 1
                costs = [
                    _si(cost["params_deploy"]) if "params_deploy" in cost else "not measured",
                    _si(cost["macs_720p"] * runs) if "macs_720p" in cost else "not measured",
                ]
            rows.append([shown[m.label], f"x{scale}", *costs, *(cells[i] for cells in per_set)])
    notes = [
        CONVENTIONS[key],
        "Params and MACs: that scale's file, deploy form; MACs of one forward pass producing a 1280x720 image.",
        "Best **bold**, second best <u>underlined</u> within each scale (PSNR and SSIM apart, as printed).",
    ]
    notes += footnotes + _absent_note(table, methods, scales) + _common_notes(table, layout)
    return _markdown(header, rows, notes)


def _common_value(costs: Sequence[Mapping[str, Any]], key: str) -> Any:
    values = {str(c[key]) for c in costs if c.get(key) is not None}
    return values.pop() if len(values) == 1 else None


def efficiency_markdown(table: BenchmarkTable, layout: Layout) -> str:
    """The NTIRE efficient-SR challenge's complexity columns (the EFDN paper's Table 1): a row per method and scale
    with deploy-form params, FLOPs and activations for a 256x256 LR input, peak memory and runtime on this device."""
    methods, scales = _layout_methods(table, layout), _layout_scales(table, layout)
    shown, footnotes = _footnotes(methods)
    costs = [table.cost(m.label, s) for s in scales for m in methods]
    device = _common_value(costs, "runtime_device") or "this machine"
    threads = _common_value(costs, "runtime_threads")
    where = f"{device}, {threads} threads" if threads and str(device).startswith("cpu") else str(device)
    runs = _common_value(costs, "runtime_runs") or "N"
    header = [
        "Method",
        "Scale",
        "Params (deploy form)",
        "FLOPs (NTIRE: MACs, 256x256 LR)",
        "Activations (256x256 LR)",
        "Conv calls",
        f"Peak memory ({where}, 256x256 LR)",
        f"Runtime ({where}, median of {runs}, 256x256 LR)",
    ]
    measured: list[tuple[str, Callable[[Any], str]]] = [
        ("params_deploy", lambda v: f"{v:,}"),
        ("flops_256", lambda v: f"{v / 1e9:.2f}G"),
        ("activations_256", lambda v: f"{v / 1e6:.2f}M"),
        ("conv_calls_256", str),
        ("peak_memory_bytes", lambda v: f"{v / 2**20:.1f} MiB"),
        ("runtime_ms_median", lambda v: f"{v:.1f} ms"),
    ]
    rows = []
    for scale in scales:
        for m in methods:
            cells = [NO_WEIGHTS] * len(measured)
            if table.result(m.label, scale) is not None:
                cost = table.cost(m.label, scale)
                cells = [fmt(cost[k]) if cost.get(k) is not None else "not measured" for k, fmt in measured]
            rows.append([shown[m.label], f"x{scale}", *cells])
    notes = [
        "FLOPs: the NTIRE convention, one multiply-add = one FLOP (convs and matmuls); activations: output elements "
        "of every conv call; both on meta-device copies of the deploy form (sr_lightning.profiling).",
        "Peak memory and runtime: measured here with `complexity.runtime=true` (eval, no_grad, float32; 'not "
        "measured' without it); not comparable with figures from other devices.",
    ]
    method = _common_value(costs, "peak_memory_method")
    if method:
        notes.append(f"Peak memory: {method}.")
    notes += footnotes + _absent_note(table, methods, scales) + list(layout.notes)
    return _markdown(header, rows, notes)


def layout_markdown(table: BenchmarkTable, layout: Layout) -> str:
    """The Markdown section of one layout: its title, then its table."""
    if layout.kind == "columns":
        body = table4_markdown(table, layout=layout)
    elif layout.kind == "rows":
        body = comparison_rows_markdown(table, layout)
    else:
        body = efficiency_markdown(table, layout)
    return f"## {layout.title}\n\n{body}"


def long_rows(table: BenchmarkTable) -> list[dict[str, Any]]:
    """One row per method and scale: identity, every set's scores, then the cost columns."""
    rows = []
    for r in table.results:
        m = r.method
        row: dict[str, Any] = {
            "method": m.column,
            "network": m.detected.name,
            "weights": m.weights,
            "scale": m.scale,
            "chop": m.variant.chop,
            "ensemble": m.variant.ensemble,
            "passes": 8 if m.variant.ensemble else 1,
        }
        for name in table.set_names:
            scores = r.sets.get(name, {})
            for k in ("psnr", "ssim", "psnr_rgb", "images"):
                if k in scores:
                    row[f"{name}_{k}"] = scores[k]
        cost = table.complexity.get((m.label, m.scale), {})
        row.update({k: cost[k] for k in COST_KEYS if k in cost})
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if value is None:  # not measured (runtime and memory without complexity.runtime)
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 100_000:
        return _si(value)
    return str(value)


def long_markdown(rows: list[dict[str, Any]]) -> str:
    """`long_rows` as a Markdown table (weights paths left to the CSV)."""
    fields = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "weights"]
    return _markdown(fields, [[_fmt(row.get(k, "-")) for k in fields] for row in rows])


def image_rows(table: BenchmarkTable) -> list[dict[str, Any]]:
    """Every image's scores, labelled with its method and scale."""
    return [{"method": r.method.column, "scale": r.method.scale, **row} for r in table.results for row in r.images]


def table4_text(table: BenchmarkTable, layouts: Sequence[Layout] = ()) -> str:
    """The text of ``table4.md``: the Table-4 block of every method (and the NTIRE RGB PSNR block when scored),
    then a section per layout."""
    has_rgb = any("psnr_rgb" in s for r in table.results for s in r.sets.values())
    text = "### Y-PSNR / SSIM (papers' protocol)\n\n" + table4_markdown(table)
    if has_rgb:
        text += "\n### RGB PSNR (NTIRE challenge)\n\n" + table4_markdown(table, "psnr_rgb")
    return text + "".join("\n" + layout_markdown(table, layout) for layout in layouts)


def write_tables(
    table: BenchmarkTable, out_dir: str | Path, layouts: Sequence[Layout] = (), **meta: Any
) -> dict[str, Path]:
    """Write table4.md (with a section per layout), table.md, table.csv, per_image.csv and table.json into
    `out_dir`; returns their paths. Every text is made before any file is written."""
    out = Path(out_dir)
    rows = long_rows(table)
    texts = {
        "table4.md": table4_text(table, layouts),
        "table.md": long_markdown(rows),
        "table.csv": _csv(rows),
        "per_image.csv": _csv(image_rows(table)),
        "table.json": json.dumps(
            {
                **meta,
                "conventions": CONVENTIONS,
                "sets": table.set_names,
                "missing_sets": table.missing_sets,
                "rows": rows,
                "bicubic": [
                    {"set": n, "scale": s, **table.bicubic(n, s)} for n in table.set_names for s in table.scales
                ],
                "lr_sources": {r.method.column: r.lr_sources for r in table.results},
                "complexity": [{"label": k[0], "scale": k[1], **v} for k, v in table.complexity.items()],
                "layouts": [asdict(layout) for layout in layouts],
            },
            indent=2,
        )
        + "\n",
    }
    return {name: atomic_write_text(out / name, text) for name, text in texts.items()}
