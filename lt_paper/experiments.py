"""Running the rows of a table: many presets x seeds, cached by the engine, teachers first.

A notebook names its rows as ``{row key: method}`` (methods are those of :mod:`lt_paper.train.presets`)
and gets back ``{row key: [result per seed]}``. Runs already finished with the same config are reused,
so notebooks that share rows (Table 1 and Figure 1 both need CE and LDAM-DRW) train them once.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from .train import train
from .train.presets import get_preset

# Decision 6: the paper distils from a 6-expert MoE trained with the ALA loss.
TEACHER_METHOD = "ala_moe6"


def preset_name(prefix: str, arch: str, method: str) -> str:
    """``smoke``/``cifar10_lt``/``imagenet_lt``... + arch + method -> a preset name (validated)."""
    name = f"{prefix}/{arch}/{method}"
    get_preset(name)  # raises with the list of valid names
    return name


def run_rows(prefix: str, arch: str, rows: dict[str, str], seeds=(0,), runs_dir="runs",
             progress: bool = True, **overrides) -> dict[str, list[dict]]:
    """Train (or reuse) every row for every seed; ``overrides`` apply to every run (and the teacher)."""
    jobs = [(row, method, seed) for row, method in rows.items() for seed in seeds]
    results: dict[str, list[dict]] = {row: [] for row in rows}
    teachers: dict[int, str] = {}
    for row, method, seed in tqdm(jobs, desc=f"{prefix}/{arch} runs", disable=not progress):
        run_overrides = dict(overrides, seed=seed, progress=False)
        if get_preset(preset_name(prefix, arch, method)).distill:
            if seed not in teachers:
                teacher = train(preset_name(prefix, arch, TEACHER_METHOD), runs_dir=runs_dir, **run_overrides)
                teachers[seed] = teacher["run_dir"]
            run_overrides["teacher"] = teachers[seed]
        results[row].append(train(preset_name(prefix, arch, method), runs_dir=runs_dir, **run_overrides))
    return results
