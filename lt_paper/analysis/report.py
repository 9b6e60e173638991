"""Provenance as Markdown: the block every report carries (commit, device, library versions, time).

The report itself is written by ``lt_paper.reproduce.write_report`` from the notebooks' outputs.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import pandas as pd

from .tables import to_markdown


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
