"""README.md and the documents of docs/ as a reader meets them: their shell commands work as written in a
fresh clone, the numbers they quote from the published results are those of the published files, and
every link resolves. Below, "the README" means README.md and every ``docs/*.md``, in that order.

Commands. Every ```bash block of the README is cut into commands (a line ending in ``\\`` continues on the
next). Comment lines start a section of the block: the tags in them apply to every command up to the
next comment line, and a command's own trailing comment may add more. Tags (the README says the same):
``[minutes]`` minutes of CPU, or needs a run that took them; ``[data]`` data the repository does not
hold; ``[gpu]``; ``[network]``; ``[server]`` runs until stopped. An untagged command runs as written, in
README order, in a fresh copy of the repository (the files a clone of this working tree holds: tracked
and untracked, not ignored) whose ``.venv`` is the environment running these tests (what
``bash .ci/setup`` makes there). A tagged command is checked instead: each ``&&`` part must be of a kind
this file knows, its executable must be in ``.venv/bin`` (or be bash, mkdir, cp), and what it names
must parse or exist: ``python -m lt_paper`` arguments through the command line's own parser, with the
preset and the ``--set`` keys; papermill's notebook and parameters; pytest's paths and markers; a
script's syntax (``bash -n``). The long commands are run by other tests: ``reproduce --profile smoke``
by tests/test_notebooks.py, training by tests/test_engine.py.

Numbers. A README table whose introducing paragraph names a published table in backquotes
(``results/<name>/<notebook>/<table>.md``; the last one it names) quotes it: each README row is the
published row with the same first cell, cell for cell under the same column names. Text that quotes the smoke MoE-3 router's mean
weights (``a / b / c``), the notebooks' wall times and the size of the published runs is compared
with ``results/smoke``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCUMENTS = [README, *sorted((REPO / "docs").glob("*.md"))]  # the front door, then the documents it lists
TAGS = {"minutes", "data", "gpu", "network", "server"}
VENV = Path(sys.executable).parent.parent  # the environment running the tests: a clone's .venv
SYSTEM_COMMANDS = ("bash", "mkdir", "cp")
SMOKE = REPO / "results" / "smoke"


@dataclass
class Command:
    text: str  # continuation lines joined
    line: int  # its first line in its document
    tags: set[str]
    document: str = "README.md"

    def __str__(self) -> str:
        return f"{self.document} line {self.line}: {self.text}"


def _tags(comment: str) -> set[str]:
    """The tags of a comment: bracketed, comma-separated words that are all known tags."""
    found = set()
    for group in re.findall(r"\[([a-z, ]+)\]", comment):
        words = {w.strip() for w in group.split(",")}
        if words <= TAGS:
            found |= words
    return found


def readme_commands(text: str, document: str = "README.md") -> list[Command]:
    """The commands of every ```bash block of ``text``, with their tags (module docstring)."""
    commands: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```bash":
            i += 1
            continue
        section: set[str] = set()
        i += 1
        while not lines[i].startswith("```"):
            line = lines[i]
            if line.lstrip().startswith("#"):
                section = section | _tags(line) if lines[i - 1].lstrip().startswith("#") else _tags(line)
            elif line.strip():
                start, parts, tags = i + 1, [], set(section)
                while True:
                    code, _, comment = lines[i].partition(" # ")
                    tags |= _tags(comment)
                    parts.append(code.rstrip().removesuffix("\\").strip())
                    if not code.rstrip().endswith("\\"):
                        break
                    i += 1
                commands.append(Command(" ".join(parts), start, tags, document))
            i += 1
        i += 1
    return commands


def _all_text() -> str:
    return "\n".join(doc.read_text() for doc in DOCUMENTS)


COMMANDS = [c for doc in DOCUMENTS for c in readme_commands(doc.read_text(), str(doc.relative_to(REPO)))]


def test_the_readme_commands_are_found_with_their_tags():
    by_text = {c.text: c.tags for c in COMMANDS}
    assert by_text[".venv/bin/python -m lt_paper presets cifar"] == set()
    assert by_text["bash .ci/setup && .venv/bin/python -m pytest -q"] == {"minutes", "network"}
    assert by_text[".venv/bin/python -m lt_paper evaluate runs/digits_lt-resnet8-ala-s0-*"] == {"minutes"}
    assert by_text[".venv/bin/python -m pytest -n 0 -m gpu tests/test_gpu.py"] == {"gpu"}
    assert sum(not c.tags for c in COMMANDS) >= 2 and len(COMMANDS) > 20


# ----------------------------------------------------------------------------------- run as written
@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """The files a clone of this working tree holds, with ``.venv`` the environment running the tests."""
    clone = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    (clone / ".venv").symlink_to(VENV)
    return clone


def test_every_untagged_command_runs_as_written_in_a_fresh_clone(fresh_clone, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(fresh_clone), JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter"))
    env.pop("LT_PAPER_ROOT", None)
    for command in [c for c in COMMANDS if not c.tags]:
        done = subprocess.run(["bash", "-c", command.text], cwd=fresh_clone, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{(done.stdout + done.stderr)[-3000:]}"
    summary = json.loads((fresh_clone / "outputs/explore/figure4/summary.json").read_text())
    # every published network with a learned router was found and drawn: MoE-3, -4, -6, RIDE-3, -4
    assert len(summary["figures"]) == 5


# ----------------------------------------------------------------------------------- checked instead
def _parts(command: Command) -> list[list[str]]:
    """The ``&&``-separated simple commands of ``command``, as word lists."""
    parts: list[list[str]] = [[]]
    for word in shlex.split(command.text):
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def _check_lt_paper(args: list[str], command: Command) -> None:
    from lt_paper.cli import build_parser
    from lt_paper.workflows.reproduce import NOTEBOOKS, split_overrides
    from lt_paper.train import get_preset
    from lt_paper.train.config import apply_overrides, parse_assignment

    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{command}: python -m lt_paper does not accept {args}")
    overrides = dict(parse_assignment(s) for s in getattr(parsed, "set", []))
    if parsed.command == "train":
        apply_overrides(get_preset(parsed.preset), overrides)
    elif parsed.command in ("reproduce", "campaign"):
        split_overrides(overrides, NOTEBOOKS)


def _check_papermill(args: list[str], command: Command) -> None:
    import yaml

    from lt_paper.workflows.reproduce import notebook_parameters

    positional, names, words = [], [], iter(args)
    for word in words:
        if word in ("-k", "--kernel"):
            next(words)
        elif word in ("-p", "--parameters"):
            names.append(next(words))
            next(words)
        elif word in ("-y", "--parameters_yaml"):
            names += list(yaml.safe_load(next(words)))
        else:
            positional.append(word)
    notebook = Path(positional[0])
    assert (REPO / notebook).is_file() and len(positional) == 2, command
    unknown = set(names) - set(notebook_parameters(notebook.stem))
    assert not unknown, f"{command}: {notebook} has no parameter(s) {sorted(unknown)}"


def _check_pytest(args: list[str], command: Command) -> None:
    import tomllib

    markers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    words = iter(args)
    for word in words:
        if word == "-n":
            workers = next(words)
            assert workers == "auto" or workers.isdigit(), f"{command}: -n {workers!r} is not a worker count"
        elif word == "-m":
            marker = next(words)
            assert any(m.startswith(f"{marker}:") for m in markers), f"{command}: marker {marker!r} not registered"
        elif not word.startswith("-"):
            assert (REPO / word.split("::")[0]).exists(), f"{command}: no {word}"


def _check_part(words: list[str], command: Command) -> None:
    program, args = words[0], words[1:]
    if program in SYSTEM_COMMANDS:
        if program == "bash":
            assert subprocess.run(["bash", "-n", str(REPO / args[0])]).returncode == 0, command
        return
    assert program.startswith(".venv/bin/") and (VENV / program.removeprefix(".venv/")).is_file(), \
        f"{command}: {program} is not an executable of .venv (made by bash .ci/setup)"
    name = Path(program).name
    if name == "torchrun":  # its own options up to -m, then the module's arguments
        args = args[args.index("-m"):]
        name = "python"
    if name == "python" and args[:2] == ["-m", "lt_paper"]:
        _check_lt_paper(args[2:], command)
    elif name == "python" and args[:2] == ["-m", "pytest"]:
        _check_pytest(args[2:], command)
    elif name == "papermill":
        _check_papermill(args, command)
    elif name == "jupyter":
        assert args[0] == "lab", command
    else:
        pytest.fail(f"{command}: no check for {program}: add one to tests/test_readme.py")


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.tags], ids=lambda c: f"line {c.line}")
def test_every_tagged_command_names_what_exists_and_parses(command):
    for words in _parts(command):
        _check_part(words, command)


# ----------------------------------------------------------------------------------- quoted numbers
def _markdown_tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """(introducing paragraph, rows of cells, header first) of every Markdown table in ``text``."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            before = "\n".join(lines[:i]).rstrip()
            intro = before[before.rfind("\n\n") + 1:]
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([cell.strip() for cell in lines[i].strip().strip("|").split("|")])
                i += 1
            tables.append((intro, [rows[0]] + rows[2:]))
        i += 1
    return tables


def test_readme_tables_quote_the_published_tables_cell_for_cell():
    quoted = 0
    for intro, rows in _markdown_tables(_all_text()):
        sources = re.findall(r"`(results/[^`]+\.md)`", intro)
        if not sources:
            continue
        source = sources[-1]  # the table quotes the last published table its paragraph names
        (_, published), *_ = _markdown_tables((REPO / source).read_text())
        header, key = published[0], rows[0][0]
        assert key in header, f"README table quoting {source}: its first column {key!r} is not one of {header}"
        published_rows = [dict(zip(header, row)) for row in published[1:]]
        for row in rows[1:]:
            # the published rows with this first cell (a job measured under two settings has two), one of
            # which must hold every quoted cell
            same_key = [p for p in published_rows if p[key] == row[0]]
            assert same_key, f"README row {row[0]!r} is not a row of {source}"
            quoted_cells = dict(zip(rows[0], row))
            assert quoted_cells in [{c: p.get(c) for c in quoted_cells} for p in same_key], \
                (source, quoted_cells, same_key)
        quoted += 1
    assert quoted >= 3  # Table 1, Table 4 and Table 5 of the smoke results


def test_readme_text_quotes_the_published_smoke_numbers():
    readme = " ".join(_all_text().split())  # sentences wrap anywhere
    means = {}  # the MoE-3 router's mean weights over all test images, per publication
    for publication in (SMOKE, REPO / "results" / "cifar10_lt_if100_cpu"):
        figure4 = json.loads((publication / "figure4_router_weights" / "summary.json").read_text())
        records = figure4["records"]  # per seed since Figure 4's verdict is given per seed
        moe3 = records["MoE-3"] if "MoE-3" in records else records["MoE-3 seed 0"]
        means[publication.name] = " / ".join(f"{w:.3f}" for w in moe3["router_weight"]["all"].values())
    quoted = re.findall(r"\b0\.\d{3} / 0\.\d{3} / 0\.\d{3}\b", readme)
    assert set(quoted) == set(means.values()), (quoted, means)  # each quoted, nothing else

    from lt_paper.workflows.reproduce import NOTEBOOKS

    # the notebooks of the last smoke publication (one added since is quoted once it is published)
    published = [nb for nb in NOTEBOOKS if (SMOKE / nb / "summary.json").is_file()]
    times = " + ".join(f"{json.loads((SMOKE / nb / 'summary.json').read_text())['wall_time_s']:.0f}"
                       for nb in published)
    count = {7: "seven", 8: "eight", 9: "nine"}[len(published)]
    assert f"the {count} notebooks in {times} s" in readme
    runs = [run for run in (SMOKE / "runs").iterdir() if run.is_dir()]
    size = sum(f.stat().st_size for run in runs for f in run.rglob("*") if f.is_file())
    assert f"{round(size / 1000)} KB for the {len(runs)} runs" in readme


def test_every_link_of_the_readme_and_the_documents_resolves():
    """Each relative link (``[text](path)``, ``![image](path)``) names a file of the repository, relative to
    the document that holds it; README links every document of docs/ (each is one click away)."""
    linked = set()
    for doc in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path = (doc.parent / target).resolve()
            assert path.exists(), f"{doc.relative_to(REPO)}: the link {target} names nothing"
            if doc == README:
                linked.add(path)
    assert {doc.resolve() for doc in DOCUMENTS[1:]} <= linked, "a document of docs/ that README does not link"
    assert len(README.read_text().splitlines()) <= 250  # the front door stays short; the rest is in docs/


def test_the_recipe_run_and_the_jpeg_pass_are_quoted_from_their_files():
    """The numbers README and docs/results.md give in words about the paper's recipe on the CPU (its time,
    its shortfall to 77.0, the test set's sampling error) and about one more JPEG pass come from the
    published run and the published record."""
    readme = " ".join(README.read_text().split())
    results = " ".join((REPO / "docs" / "results.md").read_text().split())
    (run,) = (REPO / "results" / "cifar10_lt_if100" / "runs").glob("cifar10_lt-resnet32-ldam-s0-*")
    metrics = json.loads((run / "metrics.json").read_text())
    minutes = round(metrics["wall_time_s"] / 60)
    assert f"in {minutes // 60} h {minutes % 60} min" in readme and f"is {metrics['wall_time_s']:,.0f} s" in results
    best, last = 100 * metrics["best"]["all"], 100 * metrics["all"]
    short_best, short_last = f"{77.0 - best:.1f}", f"{77.0 - last:.1f}"
    assert f"{short_best} points short ({short_last} at the last epoch)" in readme
    assert f"falls {short_best} points short" in results and f"{short_last} at the last epoch" in results
    assert f"best test epoch ({metrics['best']['epoch']};" in results
    p = metrics["best"]["all"]  # 95 % sampling error of an accuracy on the 10,000 test images, in points
    error = f"{100 * 1.96 * (p * (1 - p) / 10_000) ** 0.5:.1f} points"
    assert f"the {error} of the test set's sampling error" in readme and f"test images ({error} at 95 %)" in results
    record = (REPO / "results" / "jpeg-generation-cifar-cpu.md").read_text()
    cost = re.search(r"\| second pass - copy \| \| [-+0-9.]+ \| [-+0-9.]+ \| -([0-9.]+) \|", record).group(1)
    assert f"costs the reduced recipe {cost} points" in readme and f"One more pass costs {cost} points" in results
    paired = re.search(r"Paired by seed, All: ([^(]+) \(", record).group(1).split(", ")
    assert f"it is {', '.join(paired[:-1])} and {paired[-1]}:" in results
