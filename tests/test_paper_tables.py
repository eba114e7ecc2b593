"""The papers' comparison tables (`conf/benchmark_paper.yaml`, `evaluation/tables.py` layouts): mapping `weights`
entries, the three layouts from synthetic scores ("–" cells, best / second-best marks, FDIWN-M without weights), and
one real in-process run of three official x4 checkpoints on Set5, whose measured cells must print the numbers the
official code gives (shared/weights/official/README.md) to the 2 decimals shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sr_lightning.config import compose_config
from sr_lightning.evaluation.entries import Method, Variant, read_entry, resolve_methods
from sr_lightning.evaluation.plot import plot_points
from sr_lightning.evaluation.runs import MethodResult
from sr_lightning.evaluation.tables import BenchmarkTable, Layout, layout_markdown, table4_markdown, table4_text
from sr_lightning.inference.detect import Detected

RFDN = "RFDN (AIM 2020, 433K)"
#: official-code Set5 x4 Y-PSNR / SSIM (shared/weights/official/README.md, whole image)
SET5_X4 = {"EFDN": (32.0797, 0.8931), "PAN": (32.1349, 0.8948), RFDN: (32.1607, 0.8946)}


def _result(label: str, scale: int, scores: dict[str, tuple[float, float]], chop: bool = False) -> MethodResult:
    detected = Detected(config={"_target_": f"x.{label}", "scale": scale}, scale=scale, source="shapes", kind="x")
    method = Method(label, f"/w/{label}_x{scale}.pth", detected, Variant(chop=chop))
    sets = {
        name: {"psnr": p, "ssim": s, "bicubic_psnr": 20.0 + scale, "bicubic_ssim": 0.7, "images": 5}
        for name, (p, s) in scores.items()
    }
    return MethodResult(method=method, sets=sets, images=[])


@pytest.fixture
def synthetic() -> BenchmarkTable:
    """IMDN x2/x4, PAN x4, EFDN x2/x4, FDIWN x3: a tie, a lone method at x3, no FDIWN-M anywhere."""
    results = [
        _result("IMDN", 2, {"Set5": (38.00, 0.9605), "Set14": (33.63, 0.9177)}),
        _result("IMDN", 4, {"Set5": (32.21, 0.8948), "Set14": (28.58, 0.7811)}),
        _result("PAN", 4, {"Set5": (32.13, 0.8948), "Set14": (28.61, 0.7822)}),
        _result("EFDN", 2, {"Set5": (37.94, 0.9602), "Set14": (33.44, 0.9165)}),
        _result("EFDN", 4, {"Set5": (32.08, 0.8931), "Set14": (28.58, 0.7809)}),
        _result("FDIWN", 3, {"Set5": (34.51, 0.9280), "Set14": (30.38, 0.8427)}),
    ]
    table = BenchmarkTable(results, ["Set5", "Set14"], ["B100"])
    table.complexity = {
        (r.method.label, r.method.scale): {"params_deploy": 1000 * (i + 1), "macs_720p": 1e9 * (i + 1)}
        for i, r in enumerate(results)
    }
    table.complexity[("EFDN", 4)].update(
        flops_256=16.73e9, activations_256=111.12e6, conv_calls_256=65, peak_memory_bytes=168 * 2**20,
        runtime_ms_median=12.5, runtime_device="cpu", runtime_threads=2, runtime_runs=10,
    )  # fmt: skip
    return table


def _rows(markdown: str) -> list[list[str]]:
    """The first Markdown table of `markdown`: header, then rows (separator dropped), cells stripped."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("| ---") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows


def test_columns_layout_marks_dashes_and_notes(synthetic):
    layout = Layout.from_config(
        {"title": "EFDN Table 4", "scales": [2, 4], "methods": ["IMDN", "PAN", {"label": "EFDN", "note": "ours"}]}
    )
    text = layout_markdown(synthetic, layout)
    assert text.startswith("## EFDN Table 4\n")
    header, *rows = _rows(text)
    assert header[:3] == ["Dataset", "Scale", "Bicubic"]
    assert header[3] == "IMDN, deploy form: 2.0K params, 2.0G MACs"  # the x4 file's params / MACs
    assert header[5].startswith("EFDN [1], deploy form:") and "- [1] EFDN: ours" in text
    cells = {(r[0], r[1]): r[2:] for r in rows}
    assert list(cells) == [("Set5", "x2"), ("Set5", "x4"), ("Set14", "x2"), ("Set14", "x4")]  # no x3 rows
    # x2: PAN has no weights ("–", not a copied number); IMDN best, EFDN second, PSNR and SSIM apart
    assert cells[("Set5", "x2")] == ["22.00/0.7000", "**38.00**/**0.9605**", "–", "<u>37.94</u>/<u>0.9602</u>"]
    # x4: ties share a mark (SSIM 0.8948 twice: both bold, the next value second)
    assert cells[("Set5", "x4")] == ["24.00/0.7000", "**32.21**/**0.8948**", "<u>32.13</u>/**0.8948**",
                                     "32.08/<u>0.8931</u>"]  # fmt: skip
    assert cells[("Set14", "x4")] == ["24.00/0.7000", "<u>28.58</u>/<u>0.7811</u>", "**28.61**/**0.7822**",
                                      "<u>28.58</u>/0.7809"]  # fmt: skip
    assert "PAN: no weights at x2 in this run (–)." in text and "Missing (not evaluated): B100." in text


def test_rows_layout_fdiwn_m_without_weights(synthetic):
    layout = Layout.from_config(
        {
            "title": "FDIWN Table 4",
            "kind": "rows",
            "scales": [3, 4],
            "methods": ["IMDN", {"label": "PAN", "note": "added"}, {"label": "FDIWN-M", "note": "no weights"}, "FDIWN"],
        }
    )
    text = layout_markdown(synthetic, layout)
    header, *rows = _rows(text)
    assert header == ["Method", "Scale", "Params (deploy form)", "MACs (1280x720 output)", "Set5", "Set14"]
    cells = {(r[0], r[1]): r[2:] for r in rows}
    assert list(cells) == [(m, s) for s in ("x3", "x4") for m in ("IMDN", "PAN [1]", "FDIWN-M [2]", "FDIWN")]
    for scale in ("x3", "x4"):
        assert cells[("FDIWN-M [2]", scale)] == ["–"] * 4  # never a number: no released weights
    assert cells[("FDIWN", "x3")] == ["6.0K", "6.0G", "34.51/0.9280", "30.38/0.8427"]  # alone at x3: unmarked
    assert cells[("FDIWN", "x4")] == ["–"] * 4 and cells[("IMDN", "x3")] == ["–"] * 4
    assert cells[("PAN [1]", "x4")] == ["3.0K", "3.0G", "<u>32.13</u>/**0.8948**", "**28.61**/**0.7822**"]
    assert "FDIWN-M: no weights in this run (– everywhere)." in text and "- [1] PAN: added" in text


def test_efficiency_layout(synthetic):
    layout = Layout.from_config(
        {"title": "NTIRE", "kind": "efficiency", "scales": [4], "methods": ["EFDN", "IMDN", "RFDN"], "notes": ["n"]}
    )
    header, *rows = _rows(layout_markdown(synthetic, layout))
    assert header[-2:] == [
        "Peak memory (cpu, 2 threads, 256x256 LR)",
        "Runtime (cpu, 2 threads, median of 10, 256x256 LR)",
    ]
    assert rows[0] == ["EFDN", "x4", "5,000", "16.73G", "111.12M", "65", "168.0 MiB", "12.5 ms"]
    assert rows[1][2] == "2,000" and rows[1][3:] == ["not measured"] * 5  # measured run without those figures
    assert rows[2] == ["RFDN", "x4"] + ["–"] * 6


def test_default_table4_keeps_its_single_method_line():
    """A plain one-file run prints what `.ci/run` greps: a lone network is not marked best, nor against its own chop
    variant; a second network brings the marks."""
    table = BenchmarkTable([_result("EFDN", 4, {"Set5": (32.0797, 0.8931)})], ["Set5"])
    table.results[0].sets["Set5"].update(bicubic_psnr=28.4273, bicubic_ssim=0.8111)
    assert "| Set5 | x4 | 28.43/0.8111 | 32.08/0.8931 |" in table4_markdown(table)
    assert table4_text(table) == "### Y-PSNR / SSIM (papers' protocol)\n\n" + table4_markdown(table)
    table.results.append(_result("EFDN", 4, {"Set5": (32.0812, 0.8932)}, chop=True))
    assert "| Set5 | x4 | 28.43/0.8111 | 32.08/0.8931 | 32.08/0.8932 |" in table4_markdown(table)
    table.results.append(_result("PAN", 4, {"Set5": (32.1349, 0.8948)}))
    assert "| <u>32.08</u>/0.8931 | <u>32.08</u>/<u>0.8932</u> | **32.13**/**0.8948** |" in table4_markdown(table)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"kind": "columns"}, "`title`"),
        ({"title": "t", "kind": "transposed"}, "choose one of columns, rows, efficiency"),
        ({"title": "t", "methods": [{"name": "IMDN"}]}, r"layouts\[0\]\.methods\[0\]"),
        ({"title": "t", "scales": ["x4"]}, "positive integers"),
        ({"title": "t", "scales": 4}, "positive integers"),
        ({"title": "t", "methods": "IMDN"}, "list of column labels"),
        ({"title": "t", "colour": "red"}, r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_layout_config_errors_name_the_key(node, message):
    with pytest.raises(ValueError, match=message):
        Layout.from_config(node)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"scale": 2}, "`path: <file>` is required"),
        ({"path": "a.pth", "scale": "x2"}, "positive integer"),
        ({"path": "a.pth", "weight": 1}, r"unknown key\(s\) \['weight'\]"),
        (3, "neither a path nor a mapping"),
    ],
)
def test_weights_entry_errors(entry, message):
    with pytest.raises(ValueError, match=message):
        read_entry(entry, 0)


def test_mapping_weights_entries(official_weights_dir):
    """PAN's x2 and x3 files have the same shapes: `scale` in the entry decides; a contradicting scale is refused."""
    pan2, pan3 = (str(official_weights_dir / f"pan_x{s}_official.pth") for s in (2, 3))
    efdn4 = str(official_weights_dir / "efdn_x4_official.pth")
    methods = resolve_methods(
        [{"path": pan2, "scale": 2}, {"path": pan3, "scale": 3, "label": "PAN"}, efdn4], None, [Variant()]
    )
    assert [(m.column, m.scale, m.weights) for m in methods] == [("PAN", 2, pan2), ("PAN", 3, pan3), ("EFDN", 4, efdn4)]
    with pytest.raises(ValueError, match="pass scale=<s>"):
        resolve_methods([pan3], None, [Variant()])
    with pytest.raises(ValueError, match="contradicts"):
        resolve_methods([{"path": efdn4, "scale": 2}], None, [Variant()])
    with pytest.raises(ValueError, match="label given twice"):
        resolve_methods([{"path": efdn4, "label": "A"}], ["B"], [Variant()])
    labelled = resolve_methods([{"path": efdn4}, efdn4], ["Ours", "Theirs"], [Variant()])
    assert [m.column for m in labelled] == ["Ours", "Theirs"]


def test_paper_preset_names_every_official_file(tmp_path):
    cfg = compose_config("benchmark_paper", [], tmp_path)
    specs = [read_entry(e, i) for i, e in enumerate(OmegaConf.to_container(cfg.weights, resolve=True))]
    names = sorted(Path(s.path).name for s in specs)
    assert names == sorted(
        [f"efdn_x{s}_official.pth" for s in (2, 4)] + [f"fdiwn_x{s}_official.pt" for s in (2, 3, 4)]
        + [f"{n}_x{s}_official.pth" for n in ("imdn", "pan") for s in (2, 3, 4)] + ["rfdn_x4_official.pth"]
    )  # fmt: skip
    assert all(Path(s.path).parent == Path(cfg.paths.shared_dir) / "weights" / "official" for s in specs)
    scales = {Path(s.path).name: s.scale for s in specs if s.scale}
    assert scales == {"pan_x2_official.pth": 2, "pan_x3_official.pth": 3}
    layouts = [Layout.from_config(n, i) for i, n in enumerate(OmegaConf.to_container(cfg.layouts))]
    assert [(lo.kind, lo.scales) for lo in layouts] == [("columns", (2, 4)), ("rows", (3, 4)), ("efficiency", (4,))]
    assert [m.label for m in layouts[0].methods] == ["IMDN", "PAN", "EFDN", "FDIWN"]
    assert [m.label for m in layouts[1].methods] == ["IMDN", RFDN, "PAN", "FDIWN-M", "FDIWN"]
    assert [m.label for m in layouts[2].methods] == ["IMDN", RFDN, "PAN", "EFDN", "FDIWN"]
    assert "893K" in layouts[2].methods[0].note  # the NTIRE IMDN variant is named as another network
    assert cfg.complexity.runtime is True and list(cfg.test_sets) == ["Set5", "Set14", "B100", "Urban100"]


@pytest.mark.shared
def test_paper_tables_measured(official_weights_dir, benchmark_dir, tmp_path):
    """The preset with three x4 files (RFDN as a mapping entry, from the command-line grammar), Set5 only."""
    from sr_lightning import benchmark

    w = official_weights_dir
    cfg = compose_config(
        "benchmark_paper",
        [
            f"weights=[{w / 'efdn_x4_official.pth'},{w / 'pan_x4_official.pth'},"
            f"{{path: {w / 'rfdn_x4_official.pth'}, label: '{RFDN}'}}]",
            "test_sets=[Set5,Urban100]",
            f"paths.benchmark_dir={benchmark_dir}",
            "complexity.runtime=false",  # peak memory and runtime: the synthetic test (profiling PAN takes 20 s)
            "plot.set=Set5",
        ],
        tmp_path,
    )
    table = benchmark.run(cfg)
    text = (tmp_path / "table4.md").read_text()
    sections = dict(re.findall(r"^## (.+?)\n\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    efdn, fdiwn, ntire = (sections[t] for t in (OmegaConf.to_container(cfg.layouts)[i]["title"] for i in range(3)))

    header, *rows = _rows(efdn)
    assert [h.split(",")[0] for h in header[3:]] == ["IMDN (no weights)", "PAN", "EFDN [1]", "FDIWN [2] (no weights)"]
    cells = {(r[0], r[1]): r[2:] for r in rows}
    assert cells[("Set5", "x2")] == ["–"] * 5  # no x2 file in this run
    # measured, official numbers as printed; PSNR: PAN 32.13 second to RFDN (not here); SSIM: PAN best
    assert cells[("Set5", "x4")] == ["28.43/0.8111", "–", "**32.13**/**0.8948**", "<u>32.08</u>/<u>0.8931</u>", "–"]

    _, *rows = _rows(fdiwn)
    cells = {(r[0], r[1]): r[2:] for r in rows}
    assert cells[("RFDN (AIM 2020, 433K) [1]", "x4")] == ["433.4K", "23.8G", "**32.16**/<u>0.8946</u>"]
    assert cells[("PAN [2]", "x4")] == ["272.4K", "28.2G", "<u>32.13</u>/**0.8948**"]
    assert cells[("FDIWN-M [3]", "x4")] == cells[("FDIWN-M [3]", "x3")] == ["–"] * 3
    assert cells[("IMDN", "x4")] == ["–"] * 3

    _, *rows = _rows(ntire)
    cells = {r[0]: r[2:] for r in rows}
    assert cells["PAN"][:4] == ["272,419", "32.04G", "270.53M", "121"]  # issue 22's official-code counts
    assert cells["RFDN (AIM 2020, 433K) [2]"][:4] == ["433,448", "27.03G", "112.03M", "64"]
    assert cells["PAN"][4:] == ["not measured"] * 2  # complexity.runtime=false
    assert cells["IMDN [1]"] == ["–"] * 6 and "Missing (not evaluated): Urban100." in text

    by_label = {r.method.label: r.sets["Set5"] for r in table.results}
    for label, (psnr, ssim) in SET5_X4.items():
        assert by_label[label]["psnr"] == pytest.approx(psnr, abs=5e-5)
        assert by_label[label]["ssim"] == pytest.approx(ssim, abs=5e-5)
    assert {p["method"] for p in plot_points(table, "Set5", 4)} == set(SET5_X4)
    assert (tmp_path / "psnr_vs_macs.png").stat().st_size > 1000
    assert "peak_memory_bytes" in (tmp_path / "table.csv").read_text().splitlines()[0]
