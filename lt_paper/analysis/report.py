"""Provenance as Markdown: the block every report carries (commit, device, library versions, time).

The report itself is written by ``lt_paper.workflows.reproduce.write_report`` from the notebooks' outputs.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import pandas as pd

from .tables import to_markdown


def provenance_markdown(provenance: Mapping[str, Any]) -> str:
    """The provenance dict as a two-column Markdown table (key, value); nested keys joined by ".",
    lists as compact JSON."""
    flat = pd.json_normalize(dict(provenance), sep=".") if provenance else pd.DataFrame(index=[0])
    values = [json.dumps(list(v), default=str) if isinstance(v, (list, tuple)) else str(v)
              for v in flat.iloc[0]]
    frame = pd.DataFrame({"value": values}, index=pd.Index(list(flat.columns), name="key"))
    return to_markdown(frame)
