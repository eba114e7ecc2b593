"""Read what an offline W&B run wrote (``wandb/offline-run-*/``) without a server: the records of its ``.wandb`` file
(history, summary updates, config, run, artifacts) and its ``files/`` folder.

The ``.wandb`` file is W&B's record log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB-log style
32 KiB blocks of chunks (4-byte checksum, 2-byte length, 1-byte type: 1 full, 2 first, 3 middle, 4 last), each
record a ``wandb_internal_pb2.Record`` protobuf. The Python reader of older wandb releases is gone from 0.31.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
CHUNK_HEADER = 7


def records(path: Path) -> Iterator[pb.Record]:
    """Every record of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[: len(HEADER)] == HEADER, f"{path} is not a W&B record log"
    pos, pending = len(HEADER), b""
    while pos + CHUNK_HEADER <= len(data):
        if BLOCK - pos % BLOCK < CHUNK_HEADER:  # block trailer: too short for a chunk header
            pos += BLOCK - pos % BLOCK
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0:  # zero padding to the end of the block
            pos += (BLOCK - pos % BLOCK) % BLOCK
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def _items(items: Any) -> dict[str, Any]:
    return {(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in items}


@dataclass
class OfflineRun:
    """One ``offline-run-<time>-<id>`` folder, decoded."""

    folder: Path
    run: pb.RunRecord = field(default_factory=pb.RunRecord)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary_updates: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[pb.ArtifactRecord] = field(default_factory=list)
    exit_code: int | None = None

    @classmethod
    def read(cls, folder: Path) -> OfflineRun:
        (log,) = folder.glob("run-*.wandb")
        out = cls(folder)
        for record in records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out.run = record.run
            elif kind == "config":
                out.config.update(_items(record.config.update))
            elif kind == "history":
                out.history.append(_items(record.history.item))
            elif kind == "summary":
                out.summary_updates.append(_items(record.summary.update))
            elif kind == "artifact":
                out.artifacts.append(record.artifact)
            elif kind == "exit":
                out.exit_code = record.exit.exit_code
        return out

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def history_keys(self) -> set[str]:
        return {k for row in self.history for k in row}

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        return [row for row in self.history if key in row]

    def media(self, sub: str = "") -> list[Path]:
        return sorted(p for p in (self.folder / "files" / "media" / sub).rglob("*") if p.is_file())


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    """The offline W&B runs under ``<run_dir>/wandb``, oldest first."""
    return [OfflineRun.read(p) for p in sorted((run_dir / "wandb").glob("offline-run-*"))]


def describe(run: OfflineRun) -> str:
    """What an offline run folder contains: its files, history keys (with the number of rows holding each), summary
    keys set explicitly, config keys, artifacts."""
    lines = [f"{run.folder.name}: run id {run.run_id}, group {run.run.run_group!r}, exit code {run.exit_code}"]
    lines += ["  files:"] + [
        f"    {p.relative_to(run.folder)} ({p.stat().st_size} B)"
        for p in sorted(run.folder.rglob("*"))
        if p.is_file() and "tmp" not in p.relative_to(run.folder).parts
    ]
    counts: dict[str, int] = {}
    for row in run.history:
        for key in row:
            top = key.split("/_type")[0] if key.endswith("/_type") else key
            counts[top] = counts.get(top, 0) + 1
    keys = sorted(k for k in counts if not k.startswith("_") and k.rsplit("/", 1)[-1] not in MEDIA_FIELDS)
    lines.append("  history keys (rows): " + ", ".join(f"{k} ({counts[k]})" for k in keys))
    lines.append("  config keys: " + ", ".join(sorted(run.config)))
    lines += [f"  artifact {a.name} ({a.type}): {[c.path for c in a.manifest.contents]}" for a in run.artifacts]
    return "\n".join(lines)


#: per-field history keys W&B writes for one media value (``val/panels/width`` ...): left out of `describe`
MEDIA_FIELDS = {
    "width",
    "height",
    "format",
    "count",
    "filenames",
    "captions",
    "sha256",
    "path",
    "size",
    "ncols",
    "nrows",
    "log_mode",
    "artifact_path",
    "_latest_artifact_path",
}
