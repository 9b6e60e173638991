"""The project's set-up files agree with each other and with the README."""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_packages_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda, pip, section = set(), set(), None
    for line in (REPO / "environment.yml").read_text().splitlines():
        stripped = line.split("#")[0].strip()
        if not line.startswith(" ") and stripped.endswith(":"):
            section = stripped[:-1]  # top-level key: name, channels, dependencies
        elif section == "dependencies" and stripped == "- pip:":
            section = "pip"
        elif section == "pip" and line.startswith("      - "):
            pip.add(stripped[2:])
        elif section in ("dependencies", "pip") and line.startswith("  - "):
            section = "dependencies"
            conda.add(stripped[2:])
    conda_names = {_name(c) for c in conda} - {"python", "pip"}
    pip_names = {_name(p) for p in pip if not p.startswith("-e")}
    assert "-e ." in pip  # the package itself
    assert conda_names | pip_names == wanted
    assert not conda_names & pip_names


def test_readme_opens_with_the_two_commands_and_ci_runs_the_same_tests():
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [line for line in first_block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    main, tests = commands
    assert "reproduce --profile smoke" in main and "bash .ci/setup" in main
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == tests.strip()


def test_nbstripout_is_configured_for_the_repository():
    attributes = (REPO / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes
    assert "bash .ci/git-filters" in (REPO / ".ci" / "setup").read_text()
    filters = (REPO / ".ci" / "git-filters").read_text()
    assert "nbstripout --install" in filters and "metadata.papermill cell.metadata.papermill" in filters


def test_run_outputs_are_ignored_but_results_and_figures_are_not():
    ignored = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert "runs/" in ignored and "outputs/" in ignored
    assert not any(p.startswith(("results", "figures")) for p in ignored)


def test_provenance_names_this_checkout_commit():
    import subprocess

    from lt_paper.train.provenance import git_commit, provenance

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if not head:
        import pytest
        pytest.skip("not a git checkout")
    assert git_commit().split("+")[0] == head
    assert {"commit", "device", "torch", "torchvision", "python", "utc"} <= set(provenance())


def test_a_notebook_reading_gpu_runs_without_cuda_records_the_cpu_it_ran_on(monkeypatch):
    # `reproduce --profile cifar --no-train` on a laptop: the notebooks' device parameter is "cuda"
    # (it names the runs to read), but nothing ran on a GPU and asking CUDA for a name would raise
    import torch

    from lt_paper.train.provenance import device_name, provenance

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_name("cuda").startswith("CPU (") and provenance("cuda")["device"].startswith("CPU (")


def test_files_are_replaced_by_the_one_atomic_writer_only():
    """Writing to a temporary name and renaming it over the final one is done in lt_paper/files/atomic.py and
    nowhere else (its variants differed in fsync, permissions and clean-up of killed writers)."""
    replacing = re.compile(r"\bos\.(replace|rename)\(|[\"']\.tmp[\"']")
    offenders = [f"{path.relative_to(REPO)}:{number}" for path in sorted((REPO / "lt_paper").rglob("*.py"))
                 if path.name != "atomic.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if replacing.search(line)]
    assert offenders == [], f"temp-file-and-replace outside lt_paper/files/atomic.py: {offenders}"


def _import_graph():
    """scripts/import_graph.py, loaded from its file (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_two_modules_of_lt_paper_import_each_other():
    """Read from the source (module-level and function-level imports alike): a pair of modules that
    import each other is one concern split in two, or two concerns tangled."""
    graph = _import_graph().module_imports()
    assert "lt_paper.workflows.campaign" in graph and "lt_paper.train.engine" in graph["lt_paper.workflows.campaign"]
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, ())})
    assert pairs == [], f"modules importing each other: {pairs}"


def test_the_science_packages_never_import_the_workflows_the_benchmark_or_the_command_line():
    """data, models, losses, train and analysis sit below workflows/, bench/ and cli; files/ below all."""
    g = _import_graph()
    graph = g.module_imports()
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                    if g.package_of(module) in g.SCIENCE and g.package_of(target) in ("workflows", "bench", "cli", "__main__"))
    assert upward == [], f"science modules importing a layer above them: {upward}"
    into_files = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                        if g.package_of(module) == "files" and g.package_of(target) != "files")
    assert into_files == [], f"files/ imports only the standard library and itself: {into_files}"
    packages = g.package_imports(graph)
    both_ways = sorted({tuple(sorted((a, b))) for a, targets in packages.items() for b in targets if a in packages.get(b, ())})
    assert both_ways == [], f"packages importing each other: {both_ways}"


def test_the_top_level_of_lt_paper_holds_only_packages_and_the_command_line():
    loose = sorted(p.name for p in (REPO / "lt_paper").glob("*.py") if p.name not in ("__init__.py", "__main__.py", "cli.py"))
    assert loose == [], f"modules at lt_paper/'s top level (put each in the package of its layer): {loose}"
    for package in sorted(p for p in (REPO / "lt_paper").iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = package / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) if init.is_file() else None
        assert doc and "import" in doc.lower(), f"{init}: a docstring that says what it holds and may import"


def test_the_layer_picture_in_design_md_is_the_one_the_code_gives():
    """docs/design.md's picture of who imports whom is written by scripts/import_graph.py --write."""
    g = _import_graph()
    text = (REPO / "docs" / "design.md").read_text()
    assert g.with_picture(text, g.picture()) == text, "docs/design.md: stale import picture; run python scripts/import_graph.py --write"
