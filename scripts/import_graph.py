"""Who imports whom in ``lt_paper``, read from the source with ``ast`` (nothing is imported).

``python scripts/import_graph.py`` prints the picture of the layers (which package imports which, as a
Mermaid block); ``--write`` puts it into docs/design.md between the two markers, ``--check`` exits 1 when
the committed picture differs from the code's. ``tests/test_project.py`` checks the same and also uses
:func:`module_imports` to refuse two modules importing each other and a science package importing a
workflow one.

Every ``import`` counts, at module level and inside functions (a function-level import is still a
dependency; it only runs later). ``from .pkg import name`` counts as importing ``pkg.name`` when that is a
module, else ``pkg``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "lt_paper"
DESIGN = REPO / "docs" / "design.md"
BEGIN = "<!-- import-graph: begin (written by scripts/import_graph.py --write; do not edit) -->"
END = "<!-- import-graph: end -->"

SCIENCE = ("data", "models", "losses", "train", "analysis")  # in data-flow order
# the picture's layers, bottom-up: each package drawn in the layer it belongs to
LAYERS = {"files": "file safety", **{p: "science" for p in SCIENCE}, "workflows": "workflows",
          "bench": "benchmark", "cli": "command line"}


def modules(root: Path = REPO / PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package (a package is its ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def module_imports(root: Path = REPO / PACKAGE) -> dict[str, set[str]]:
    """``{module: the modules of the package it imports}``, self-imports left out."""
    known = modules(root)
    graph = {}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in known else source)
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def package_of(module: str) -> str:
    """``lt_paper.train.engine`` -> ``train``; ``lt_paper.cli`` -> ``cli``; ``lt_paper`` -> ``lt_paper``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_imports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``{package: the other packages it imports}`` (``__main__`` counts with ``cli``; the top-level
    ``lt_paper/__init__.py`` imports nothing)."""
    def top(module: str) -> str:
        name = package_of(module)
        return "cli" if name == "__main__" else name

    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = top(module)
        if source == PACKAGE:
            continue
        edges.setdefault(source, set()).update(top(t) for t in targets if top(t) not in (source, PACKAGE))
    return edges


def mermaid(edges: dict[str, set[str]]) -> str:
    """The package graph as a Mermaid block, layers as subgraphs, bottom-up, sorted (stable text)."""
    order = list(LAYERS)
    unknown = sorted(set(edges) - set(order))
    if unknown:
        raise SystemExit(f"scripts/import_graph.py: package(s) {unknown} have no layer in LAYERS; add them")
    lines = ["```mermaid", "flowchart BT"]
    for layer in dict.fromkeys(LAYERS.values()):
        members = [p for p in order if LAYERS[p] == layer and p in edges]
        lines.append(f'  subgraph layer_{layer.replace(" ", "_")} ["{layer}"]')  # ids apart from packages'
        lines += [f"    {p}" for p in members]
        lines.append("  end")
    for source in order:
        for target in sorted(edges.get(source, ()), key=order.index):
            lines.append(f"  {source} --> {target}")
    lines.append("```")
    return "\n".join(lines)


def picture() -> str:
    return mermaid(package_imports(module_imports()))


def with_picture(text: str, block: str) -> str:
    """``text`` (docs/design.md) with ``block`` between the markers; the markers must be there once."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{DESIGN.relative_to(REPO)}: needs the markers {BEGIN!r} and {END!r}, once each, in order")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the picture into docs/design.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when docs/design.md's picture is stale")
    args = parser.parse_args(argv)
    block = picture()
    if not (args.write or args.check):
        print(block)
        return 0
    text = DESIGN.read_text()
    updated = with_picture(text, block)
    if args.check:
        if updated != text:
            print(f"{DESIGN.relative_to(REPO)}: the import picture differs from the code; run "
                  f"python scripts/import_graph.py --write", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        DESIGN.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
