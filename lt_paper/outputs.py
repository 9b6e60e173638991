"""Where a notebook puts what it produced: tables (Markdown + CSV), figures (PNG), a summary.

Each notebook writes into its own folder; ``summary.json`` lists every table and figure with a title,
plus the numbers the notebook recorded, and its provenance. The reproduce command and the tests read
these files, never the notebook's cell outputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from .analysis import save_figure, table_markdown
from .provenance import provenance
from .train.checkpoint import atomic_write_json


class NotebookOutputs:
    def __init__(self, directory, notebook: str, parameters: dict):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.summary = {"notebook": notebook, "parameters": parameters, "tables": [], "figures": [],
                        "records": {}}

    def table(self, name: str, frame: pd.DataFrame, title: str, decimals: int = 1):
        """Save ``frame`` as ``name.md`` and ``name.csv``; return it rendered, for Jupyter to show."""
        from IPython.display import Markdown

        markdown = f"### {title}\n\n{table_markdown(frame, decimals=decimals)}\n"
        (self.dir / f"{name}.md").write_text(markdown)
        frame.to_csv(self.dir / f"{name}.csv")
        self.summary["tables"].append({"name": name, "title": title, "markdown": f"{name}.md",
                                       "csv": f"{name}.csv"})
        self._flush()
        return Markdown(markdown)

    def figure(self, name: str, fig, title: str):
        """Save ``fig`` as ``name.png`` and return it so Jupyter shows it inline."""
        save_figure(fig, self.dir / f"{name}.png")
        self.summary["figures"].append({"name": name, "title": title, "png": f"{name}.png"})
        self._flush()
        return fig

    def record(self, key: str, value) -> None:
        """A number or small structure the notebook measured (the tests assert on these)."""
        self.summary["records"][key] = value
        self._flush()

    def finish(self, device=None) -> dict:
        self.summary["wall_time_s"] = time.perf_counter() - self.started
        self.summary["provenance"] = provenance(device)
        self._flush()
        return self.summary

    def _flush(self) -> None:
        atomic_write_json(self.dir / "summary.json", self.summary)


def load_summary(directory) -> dict:
    return json.loads((Path(directory) / "summary.json").read_text())
