"""Plan an `upscale` run before any image is upscaled: every input probed, every output path named, and the run
refused (`PlanError`, nothing written) when it would destroy a file.

- Inputs that are missing, undecodable or animated fail here, by name; the others go on.
- Output: ``<output>/<relative folder>/<name><ext>``, ``name`` filled with ``{stem}`` (the input's name without
  extension), ``{ext}`` (its extension without the dot) and ``{scale}``.
- Two inputs that would write one file (``a/img.png`` and ``b/img.png`` of a list; ``photo.png`` and
  ``photo.jpg`` with ``format=png``; ``anim.gif`` beside ``anim.png``) are a `PlanError` listing them: no rule
  guesses which one the user wanted under that name. ``name="{stem}_{ext}_x{scale}"`` separates inputs that differ
  by extension; inputs of different folders with one name go to separate runs (or a folder input, whose outputs
  mirror its sub-folders).
- An output that is an existing input file (after `Path.resolve`, so symlinks and ``..`` count; or the same file
  through a hard link) is a `PlanError`, unless it is the output's own input and ``overwrite=true``. An output over
  *another* input of the run is always refused: that input may not have been read yet.
- Every output folder is created and checked writable, and temporary files that killed runs left there
  (`sr_lightning.utils.atomic.remove_stale_temps`) are removed.
"""

from __future__ import annotations

import logging
import os
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_lightning.inference.images import EXTENSIONS, output_format, probe_picture
from sr_lightning.utils.atomic import remove_stale_temps

log = logging.getLogger(__name__)
#: the fields `name=` may use
NAME_FIELDS = ("stem", "ext", "scale")


class PlanError(Exception):
    """A run that cannot start as configured; the message says which option or file to change."""


@dataclass
class Job:
    """One input of a run: its file, its path relative to the input root, and its report record (``status`` set
    once it is done: ok, failed, skipped)."""

    source: Path
    relative: Path
    record: dict[str, Any] = field(default_factory=dict)
    format: str = ""  # the output's Pillow format
    target: Path | None = None

    @property
    def pending(self) -> bool:
        return "status" not in self.record

    def fail(self, err: BaseException) -> None:
        self.record["status"], self.record["error"] = "failed", f"{type(err).__name__}: {err}"
        log.error("%s: %s", self.source, self.record["error"])


def probe_jobs(items: list[tuple[Path, Path]], spec: object) -> list[Job]:
    """A `Job` per collected input (a file named twice, e.g. by a folder and by name, once), its header read:
    missing, undecodable and animated files fail here."""
    if not items:
        raise PlanError(f"no images found for input={spec}: name a file, a folder, a glob or a .txt list of paths")
    jobs = []
    seen: set[tuple[Path, Path]] = set()
    for source, relative in items:
        if (source.resolve(), relative) in seen:
            continue
        seen.add((source.resolve(), relative))
        job = Job(source, relative, {"input": str(source)})
        try:
            job.format = probe_picture(source)
        except Exception as err:  # a bad file must not stop the others
            job.fail(err)
        jobs.append(job)
    return jobs


def check_name(name: str) -> None:
    """`name=` may use only `NAME_FIELDS`."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(name) if f is not None}
    except ValueError as err:
        raise PlanError(f"name={name!r} is not a valid template ({err}): use {{stem}}, {{ext}}, {{scale}}") from err
    unknown = sorted(fields - set(NAME_FIELDS))
    if unknown:
        raise PlanError(f"name={name!r} uses unknown field(s) {unknown}: use {{stem}}, {{ext}} and {{scale}}")


def name_targets(jobs: list[Job], output: Path, name: str, chosen_format: str | None, scale: int) -> None:
    """Set each pending job's output format and path (``record["output"]`` too)."""
    check_name(name)
    for job in jobs:
        if not job.pending:
            continue
        try:
            job.format = output_format(job.format, chosen_format)
        except ValueError as err:
            raise PlanError(f"format={chosen_format}: {err}") from err
        ext = job.source.suffix.lstrip(".")
        stem = name.format(stem=job.relative.stem, ext=ext, scale=scale)
        job.target = output / job.relative.parent / f"{stem}{EXTENSIONS[job.format]}"
        job.record["output"] = str(job.target)


def check_collisions(jobs: list[Job]) -> None:
    """Two inputs that would write one file: `PlanError` listing every such group."""
    by_target: dict[Path, list[Job]] = {}
    for job in jobs:
        if job.target is not None:
            by_target.setdefault(job.target.resolve(), []).append(job)
    groups = {t: js for t, js in by_target.items() if len(js) > 1}
    if not groups:
        return
    lines = [f"  {t} <- " + ", ".join(str(j.source) for j in js) for t, js in groups.items()]
    raise PlanError(
        f"{len(groups)} output file(s) would each be written by several inputs (nothing was written):\n"
        + "\n".join(lines)
        + "\nGive them distinct names: name='{stem}_{ext}_x{scale}' separates inputs that differ by extension; "
        "inputs of different folders with one name need separate runs (or a folder input, mirrored in the output)"
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_inputs_kept(jobs: list[Job], overwrite: bool) -> None:
    """An output that is an existing input file: `PlanError`, unless it is its own input and `overwrite`."""
    by_path = {job.source.resolve(): job for job in jobs if job.source.is_file()}
    by_inode = {_identity(path): job for path, job in by_path.items()}  # hard links
    by_inode.pop(None, None)
    problems = []
    for job in jobs:
        if job.target is None or not job.pending or not job.target.exists():
            continue
        owner = by_path.get(job.target.resolve()) or by_inode.get(_identity(job.target))
        if owner is None or (owner is job and overwrite):
            continue
        why = "its own input; overwrite=true allows that" if owner is job else "another input of this run"
        problems.append(f"  {job.source} -> {job.target} would overwrite {owner.source} ({why})")
    if problems:
        raise PlanError(
            f"{len(problems)} output(s) would overwrite input files (nothing was written):\n"
            + "\n".join(problems)
            + "\nChoose another output= folder or name= (default '{stem}_x{scale}')"
        )


def skip_existing(jobs: list[Job]) -> None:
    """Jobs whose output exists are done (``skip_existing=true``: re-running after an interruption)."""
    for job in jobs:
        if job.pending and job.target is not None and job.target.exists():
            job.record["status"] = "skipped (exists)"


def prepare_folders(jobs: list[Job]) -> None:
    """Create every output folder, check that a file can be created in it, and remove stale temporary files."""
    folders = sorted({job.target.parent for job in jobs if job.pending and job.target is not None})
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".sr-write-check-")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise PlanError(
                f"output folder {folder} is not writable ({reason}): choose another output= or fix its permissions"
            ) from err
        removed = remove_stale_temps(folder)
        if removed:
            log.info("%s: removed %d temporary file(s) left by an interrupted run", folder, removed)


def plan_outputs(
    jobs: list[Job],
    output: Path,
    name: str,
    chosen_format: str | None,
    scale: int,
    overwrite: bool = False,
    keep_existing: bool = False,
) -> None:
    """Name every output, refuse collisions and overwritten inputs, skip existing outputs (`keep_existing`), and
    prepare the output folders; raises `PlanError` before anything is written."""
    name_targets(jobs, output, name, chosen_format, scale)
    check_collisions(jobs)
    if keep_existing:
        skip_existing(jobs)
    check_inputs_kept(jobs, overwrite)
    prepare_folders(jobs)
