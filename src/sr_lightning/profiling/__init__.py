"""Model complexity, as the NTIRE efficient-SR challenge and the lightweight-SR papers report it.

`measure_complexity(net, scale)` gives parameters (training and deploy form), FLOPs and activations for a 256x256
LR input (NTIRE), MACs for a 1280x720 output (papers), the same without weight-normalised convs (FDIWN's paper
counts), and optionally peak memory and runtime; `format_complexity_table` prints reports as Markdown;
`count_macs` is the papers' MACs alone. Modules: counts (FLOP counter, activation hooks), memory, timing, report,
table.
"""

from sr_lightning.profiling.counts import HR_720P, LR_256, count_convs, count_macs
from sr_lightning.profiling.report import measure_complexity, write_complexity_files, write_complexity_json
from sr_lightning.profiling.table import format_complexity_table

__all__ = [
    "HR_720P",
    "LR_256",
    "count_convs",
    "count_macs",
    "format_complexity_table",
    "measure_complexity",
    "write_complexity_files",
    "write_complexity_json",
]
