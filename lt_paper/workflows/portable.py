"""Published files that name no folder of the machine that made them, and hold strict JSON.

A reproduce output records where things were on its machine: the runs folder (``/work/x/runs``), each run
it read, the data root, a distilled run's teacher. Published, those paths mean nothing elsewhere and tell
who built it where; :func:`portable_text` rewrites them (a known folder to its published place, anything
under the repository relative to it, any other absolute path to its last component), and
:func:`strict_json` turns the NaN that Python's ``json`` writes for an empty shot group into ``null``.

Run identity is kept: a run's config hash covers neither ``data_root`` (a location) nor the teacher's folder
beyond its name (``train.config``), which is all these rewrites touch in a ``config.json``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePath

# An absolute POSIX path inside text: "/" not preceded by a word character, ".", ":", "/" or "~" (so URLs,
# relative paths and "../x" are not matched), then at least one folder.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.+-]+/)+[\w.+-]*")


def absolute_paths(text: str) -> list[str]:
    """The absolute paths ``text`` holds."""
    return ABSOLUTE_PATH.findall(text)


def portable_text(text: str, places: dict[str, str], repo_root: str | Path) -> str:
    """``text`` with every absolute path rewritten: one under a folder of ``places`` (``{absolute folder:
    its published, repository-relative place}``) moves there, one under ``repo_root`` becomes relative to
    it, any other keeps its last component only."""
    root = str(repo_root).rstrip("/")

    def rewrite(match: re.Match) -> str:
        path = match.group(0)
        for folder, place in sorted(places.items(), key=lambda kv: -len(kv[0])):
            folder = folder.rstrip("/")
            if path == folder or path.startswith(folder + "/"):
                return place + path[len(folder):]
        if path.startswith(root + "/"):
            return path[len(root) + 1:]
        return PurePath(path).name or path

    return ABSOLUTE_PATH.sub(rewrite, text)


def strict_json(value):
    """``value`` with every non-finite float (NaN, inf) replaced by None, so that ``json.dumps`` writes
    strict JSON (``null``) that any parser reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
