"""One Markdown report from tables and figures, with a provenance block.

A report is what ``results/`` keeps next to the numbers: each item a titled table (rendered by
``tables.table_markdown``, so mean ± std, the paper's numbers and the differences read the same
everywhere) or a figure (linked relative to the report, so the folder can be moved as a whole), and a
provenance block (commit, config, device, wall time, library versions: DESIGN "figures/ and results/").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .tables import table_markdown, to_markdown


def flatten_provenance(provenance: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> {"a.b": "value"}; lists and other values as compact JSON / str."""
    flat: dict[str, str] = {}
    for key, value in provenance.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_provenance(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value), default=str)
        else:
            flat[name] = str(value)
    return flat


def provenance_markdown(provenance: Mapping[str, Any]) -> str:
    """The provenance dict as a two-column Markdown table (key, value)."""
    flat = flatten_provenance(provenance)
    frame = pd.DataFrame({"value": list(flat.values())}, index=pd.Index(list(flat), name="key"))
    return to_markdown(frame)


def write_report(path: str | Path, items: Sequence[tuple[str, pd.DataFrame | str | Path]],
                 title: str = "Results", provenance: Mapping[str, Any] | None = None,
                 intro: str | None = None, decimals: int = 1) -> Path:
    """Write a Markdown report to ``path`` (parent directories created) and return the path.

    items: (section title, DataFrame or path of an image file). Images must exist (FileNotFoundError
    naming the item otherwise) and are linked relative to the report's directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}\n"]
    if intro:
        parts.append(f"{intro.strip()}\n")
    for heading, item in items:
        parts.append(f"## {heading}\n")
        if isinstance(item, pd.DataFrame):
            parts.append(table_markdown(item, decimals=decimals))
        elif isinstance(item, (str, Path)):
            image = Path(item)
            if not image.is_file():
                raise FileNotFoundError(f"report item {heading!r}: figure {image} does not exist")
            link = Path(os.path.relpath(image.resolve(), path.parent.resolve())).as_posix()
            parts.append(f"![{heading}]({link})\n")
        else:
            raise TypeError(f"report item {heading!r}: expected a DataFrame or an image path, "
                            f"got {type(item).__name__}")
    if provenance:
        parts.append("## Provenance\n")
        parts.append(provenance_markdown(provenance))
    path.write_text("\n".join(parts))
    return path
