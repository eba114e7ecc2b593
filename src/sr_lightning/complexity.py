"""`python -m sr_lightning.complexity model=<name> scale=<s> | weights=<file>`: NTIRE efficient-SR complexity.

Examples:
    python -m sr_lightning.complexity weights=../shared/weights/official/efdn_x4_official.pth
    python -m sr_lightning.complexity weights=../shared/weights/official/efdn_x4_official.pth form=train
    python -m sr_lightning.complexity model=fdiwn_m scale=3 runtime=false
Prints a Markdown table (parameters in both forms; FLOPs and activations for a 256x256 LR input, NTIRE's convention;
MACs for a 1280x720 output, the papers'; the same without weight-normalised convs; peak memory; runtime) and writes
it as `complexity.md`, with `complexity.json` (`sr_lightning.profiling.measure_complexity`'s keys, plus ``weights``),
into the run directory.
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch allocates: see sr_lightning/process.py

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from sr_lightning.archs.forms import has_training_form, training_form_from_config
from sr_lightning.config import entry_point, model_override
from sr_lightning.inference.loading import load_network
from sr_lightning.profiling import format_complexity_table, measure_complexity
from sr_lightning.tasks.complexity import write_complexity

log = logging.getLogger(__name__)


def _model_choice() -> str | None:
    """``FDIWN-M`` for ``model=fdiwn_m``: the model config's name, when one was chosen."""
    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get("model")
    return str(choice).upper().replace("_", "-") if choice else None


def networks(cfg: DictConfig) -> tuple[nn.Module, nn.Module, int, dict[str, Any]]:
    """(the network, its training form, scale, what to add to the report) for `cfg.weights` or `cfg.model`.

    A weights file holding the deploy form (the official EFDN checkpoints) loads into the deploy form; its training
    form is then the architecture of its model config, without weights (counts do not depend on weight values)."""
    model = model_override(cfg)
    if cfg.get("weights"):
        net, detected = load_network(cfg.weights, model, cfg.get("scale"))  # folded when the file holds the deploy form
        extra: dict[str, Any] = {"network": _model_choice() or detected.name, "weights": str(cfg.weights)}
        found = None if has_training_form(net) else training_form_from_config(detected.config, net)
        if found is None:  # the file holds the training form (or no training form is known)
            source = "the weights file" + ("" if has_training_form(net) else " (nothing to fold)")
            return net, net, detected.scale, {**extra, "train_form_source": source, "notes": []}
        note = (f"{Path(cfg.weights).name} holds the deploy form: the training form is the architecture of {found[1]}, "
                "without weights (counts do not depend on weight values)")  # fmt: skip
        source = f"architecture of {found[1]}, weights not loaded"
        return net, found[0], detected.scale, {**extra, "train_form_source": source, "notes": [note]}
    if model is None:
        raise ValueError("pass model=<name> scale=<s> (a config of conf/model/) or weights=<file>")
    if cfg.get("scale") is None:
        raise ValueError(f"model={_model_choice()} needs scale=<s>")
    torch.manual_seed(int(cfg.seed))
    net = instantiate(cfg.model)
    notes = ["weights: none (a model config, random initialisation; counts do not depend on weight values)"]
    extra = {"network": _model_choice(), "weights": None, "train_form_source": "the model config", "notes": notes}
    return net, net, int(cfg.scale), extra


def run(cfg: DictConfig) -> dict[str, Any]:
    """Measure the network of `cfg`; returns the report (also printed as a table)."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    net, train, scale, extra = networks(cfg)
    lr_size = cfg.lr_size if isinstance(cfg.lr_size, int) else tuple(cfg.lr_size)
    report = measure_complexity(
        net,
        scale,
        form=str(cfg.form),
        lr_size=lr_size,
        runtime=bool(cfg.runtime),
        device=str(cfg.device),
        warmup=int(cfg.warmup),
        runs=int(cfg.runs),
        seed=int(cfg.seed),
        train_net=train,
        name=cfg.get("name") or extra["network"],
    )
    report.update(weights=extra["weights"], train_form_source=extra["train_form_source"])
    report["notes"] = extra["notes"] + report["notes"]
    return report


@entry_point("complexity")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    report = run(cfg)
    print(format_complexity_table([report]))
    write_complexity(report, cfg.paths.output_dir)


if __name__ == "__main__":
    main()
