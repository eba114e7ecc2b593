"""Every command that README.md and docs/*.md show composes, so a renamed option or group fails here, not in a
reader's shell; the README's smoke run runs for real.

A command is a `python -m sr_lightning...` or `sr-<entry>` (the package's console scripts) call, in a fenced `bash`
block (lines joined at a trailing backslash, split at `&&` and `;`) or in inline code. Each is composed in-process
with `sr_lightning.config.compose_config` (what `--cfg job` prints, without running), so commands that
need the network, pip, SLURM or a GPU are checked without them. The rules for what a command may hold:

- a placeholder `<name>` is replaced with the value PLACEHOLDERS gives it (`<a|b>`: the first alternative); a
  placeholder not listed there fails, naming it;
- `...` (more overrides, more list items) and `[overrides]` are dropped;
- a sweep (`a=1,2`, `choice(...)`, `interval(...)`, and the `hydra.sweeper.params` of a `hparams_search` option)
  composes with its first value;
- `--config-dir DIR` and `file://$PWD/DIR` name the README's "Your own configs" folder: its example is written to a
  temporary DIR, added through `hydra.searchpath`;
- `python -m sr_lightning.data.download` is parsed by its own command line with `--list` added (no download);
- SKIP names the commands that are shown but not composed, each with its reason.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType

from sr_lightning.config import compose_config
from sr_lightning.data import download
from sr_lightning.paths import shared_dir

REPO = Path(__file__).parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: The quickstart's smoke run: the one command this test runs (from a temporary directory).
SMOKE_RUN = "python -m sr_lightning.train trainer.max_steps=2"

#: Placeholder -> the value composed in its place. Composition loads no file, so paths need not exist.
PLACEHOLDERS = {
    "file": str(shared_dir() / "weights" / "official" / "efdn_x4_official.pth"),
    "run": "2026-01-01_00-00-00",
    "dir": "some/dir",
    "folder": "some/folder",
    "path": "some/image.png",
    "name": "efdn",
    "s": "4",
}
#: The same for `python -m sr_lightning.data.download`, whose `<name>` is an archive.
DOWNLOAD_PLACEHOLDERS = {**PLACEHOLDERS, "name": "benchmark"}

#: Commands shown but not composed: {exact command text: reason}. Empty today: every command composes.
SKIP: dict[str, str] = {}

#: console script -> entry module, from the installed package's metadata (pyproject's [project.scripts])
SCRIPTS = {
    ep.name: ep.value.split(":")[0] for ep in distribution("sr-lightning").entry_points if ep.group == "console_scripts"
}
COMMAND_START = re.compile(r"^(python3? -m sr_lightning\.[a-z_]|(" + "|".join(map(re.escape, SCRIPTS)) + r")(\s|$))")
COMMAND_ANYWHERE = re.compile(COMMAND_START.pattern.replace("^", r"(^|\s)", 1))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
#: arguments that stand for "more overrides"
ELLIPSES = {"...", "[overrides]"}
#: Hydra flags that leave the composed config as it is
NEUTRAL_FLAGS = {"-m", "--multirun", "--resolve", "--help", "-h", "--hydra-help", "--info"}


@dataclass(frozen=True)
class Command:
    doc: str  # file name, relative to the repository
    line: int
    text: str  # as the reader sees it (continuations joined, comment dropped)
    module: str  # sr_lightning.train, sr_lightning.data.download, ...
    args: tuple[str, ...]  # after the module or script name, shell-split

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def _command(doc: str, line: int, tokens: list[str]) -> Command | None:
    """The Command of shell tokens that start with a package command, else None."""
    text = shlex.join(tokens)
    if not COMMAND_START.match(text):
        return None
    if tokens[0] in SCRIPTS:
        return Command(doc, line, text, SCRIPTS[tokens[0]], tuple(tokens[1:]))
    return Command(doc, line, text, tokens[2], tuple(tokens[3:]))


def _split_shell(doc: str, line: int, source: str) -> list[Command]:
    """The package commands of one shell line (several when chained with `&&` or `;`)."""
    if not COMMAND_ANYWHERE.search(source):
        return []
    try:
        tokens = shlex.split(source, comments=True)
    except ValueError as e:
        raise AssertionError(f"{doc}:{line}: cannot split {source!r} as a shell line: {e}") from e
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token in {"&&", "||", ";", "|"}:
            parts.append([])
        else:
            parts[-1].append(token)
    return [c for part in parts if part and (c := _command(doc, line, part))]


def extract(path: Path) -> list[Command]:
    """Every package command of a Markdown file: fenced shell blocks, then inline code outside them."""
    text = path.read_text()
    doc = path.relative_to(REPO).as_posix()
    commands: list[Command] = []
    for block in FENCE.finditer(text):
        if block.group(1) not in {"bash", "sh", "shell", "console", ""}:
            continue
        first_line = text.count("\n", 0, block.start(2)) + 1
        pending, start = "", 0
        for i, raw in enumerate(block.group(2).splitlines()):
            if not pending:
                start = first_line + i
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            commands += _split_shell(doc, start, pending + raw)
            pending = ""
    outside = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keeps line numbers
    for span in re.finditer(r"`([^`]+)`", outside):
        source = " ".join(span.group(1).replace("\\|", "|").split())  # table pipes; spans broken across lines
        if COMMAND_START.match(source):
            commands += _split_shell(doc, outside.count("\n", 0, span.start()) + 1, source)
    return commands


COMMANDS = [c for path in DOCS for c in extract(path)]


def substitute(arg: str, table: dict[str, str], where: str) -> str:
    """`arg` with its placeholders replaced and its `...` list items dropped."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if "|" in name:
            return name.split("|")[0]
        assert name in table, f"{where}: placeholder <{name}> has no value: add it to PLACEHOLDERS in {__name__}.py"
        return table[name]

    return re.sub(r",\s*\.\.\.(?=[\]\s]|$)", "", re.sub(r"<([^<>]+)>", value, arg))


def first_values(overrides: list[str]) -> list[str]:
    """The overrides with every sweep reduced to its first value."""
    out = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            out.append(override.input_line)
        elif override.value_type == ValueType.INTERVAL_SWEEP:
            out.append(f"{override.get_key_element()}={override.value().start}")
        else:
            out.append(f"{override.get_key_element()}={next(override.sweep_string_iterator())}")
    return out


def hydra_arguments(command: Command, user_configs: Path) -> tuple[str, list[str]]:
    """(config name, overrides) that the command's Hydra command line composes."""
    config_name = command.module.rsplit(".", 1)[-1]
    overrides: list[str] = []
    args = [substitute(a, PLACEHOLDERS, command.where) for a in command.args if a not in ELLIPSES]
    while args:
        arg = args.pop(0)
        if arg in NEUTRAL_FLAGS:
            continue
        if arg == "--cfg":
            args.pop(0)
        elif arg in {"--config-dir", "-cd"}:
            overrides.append(f"hydra.searchpath=[file://{user_configs.parent / args.pop(0)}]")
        elif arg in {"--config-name", "-cn"}:
            config_name = args.pop(0)
        elif arg.startswith("-"):
            pytest.fail(f"{command.where}: {command.text}: flag {arg} is not handled by {__name__}.py")
        else:
            overrides.append(arg.replace("$PWD", str(user_configs.parent)))
    return config_name, overrides


@pytest.fixture(scope="module")
def user_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's "Your own configs" example, written under a temporary `my_configs/`."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"`my_configs/(\S+\.yaml)`.*?```yaml\n(.*?)```", readme, re.S)
    assert match, "README 'Your own configs' has no `my_configs/<file>.yaml` followed by a yaml block"
    folder = tmp_path_factory.mktemp("user") / "my_configs"
    (folder / match.group(1)).parent.mkdir(parents=True)
    (folder / match.group(1)).write_text(match.group(2))
    return folder


def test_the_docs_show_commands() -> None:
    """The extraction finds the commands (a changed Markdown layout must not pass by finding none)."""
    found = {c.doc for c in COMMANDS}
    assert {"README.md", "docs/training.md", "docs/reproduce.md", "docs/deploy.md"} <= found, found
    assert len(COMMANDS) >= 40, len(COMMANDS)
    stale = set(SKIP) - {c.text for c in COMMANDS}
    assert not stale, f"SKIP names commands no document shows: {stale}"


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_command_composes(command: Command, user_configs: Path, tmp_path: Path) -> None:
    if command.text in SKIP:
        pytest.skip(f"{command.where}: {SKIP[command.text]}")
    if command.module == "sr_lightning.data.download":
        args = [substitute(a, DOWNLOAD_PLACEHOLDERS, command.where) for a in command.args]
        try:
            download.main([*args, "--list"])  # parses the command line, then lists: downloads nothing
        except SystemExit as e:
            pytest.fail(f"{command.where}: `{command.text}`: its options do not parse (exit {e.code})")
        names = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "--root")]
        unknown = set(names) - set(download.ARCHIVES) - set(download.GROUPS)
        assert not unknown, f"{command.where}: `{command.text}`: unknown archives {unknown} (see --list)"
        return
    config_name, overrides = hydra_arguments(command, user_configs)
    try:
        overrides = first_values(overrides)
        compose_config(config_name, overrides, tmp_path)
        # a hparams_search sweep: its own parameters too, at their first values (the command line's win)
        sweep = HydraConfig.get().sweeper.get("params") or {}
        given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        extra = first_values([f"{k}={v}" for k, v in sweep.items() if k not in given])
        if extra:
            compose_config(config_name, overrides + extra, tmp_path)
    except Exception as e:  # noqa: BLE001 - any composition error is the finding; name the command
        pytest.fail(f"{command.where}: `{command.text}` does not compose ({config_name}, {overrides}):\n{e}")


def _heading_slugs(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    text = FENCE.sub("", path.read_text())
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slugs.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return slugs


def test_links_and_named_files_exist() -> None:
    """Relative links (and their #anchors) of the README and docs/ resolve; every `benchmarks/*.py` and
    `notebooks/*.ipynb` they name exists, with the flags they give it."""
    problems = []
    for path in DOCS:
        text = FENCE.sub("", path.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                problems.append(f"{path.name}: link to missing {target}")
            elif anchor and linked.suffix == ".md" and anchor not in _heading_slugs(linked):
                problems.append(f"{path.name}: link to missing heading {target}")
        for script, flags in re.findall(r"((?:benchmarks|notebooks)/\w+\.(?:py|ipynb))((?: --[\w-]+(?: \d+)?)*)", text):
            if not (REPO / script).exists():
                problems.append(f"{path.name}: names missing {script}")
                continue
            source = (REPO / script).read_text()
            problems += [f"{path.name}: {script} has no {f}" for f in re.findall(r"--[\w-]+", flags) if f not in source]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_readme_smoke_run_runs(tmp_path: Path) -> None:
    """The quickstart's smoke run, as written, trains, folds, tests and writes its files."""
    readme = (REPO / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert SMOKE_RUN in quickstart, f"README's quickstart no longer shows {SMOKE_RUN!r}: update SMOKE_RUN"
    argv = [sys.executable, *shlex.split(SMOKE_RUN)[1:]]
    env = {**os.environ, "SR_LOG_DIR": str(tmp_path / "logs")}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    for name in ["weights/model.pth", "weights/deploy.pth", "benchmark.json", "complexity.json", "summary.json"]:
        assert (run / name).is_file(), name
