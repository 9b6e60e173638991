"""The reproduction profiles: which parameters each notebook runs with, and where each profile publishes.

One table for everything that names a profile: ``python -m lt_paper reproduce --profile NAME`` runs
every notebook with ``PROFILES[NAME]``; a notebook's own ``profile`` parameter fills the parameters left
``None`` in its parameters cell from the same table (:func:`profile_parameters`,
:meth:`lt_paper.workflows.outputs.NotebookOutputs.from_parameters`), and with ``train = False`` reads the
profile's published runs (``PUBLISHED_RUNS``); ``campaign`` and ``publish`` read the table too.

Profiles:

* ``smoke``: scikit-learn's digits (embedded, no download), CPU, one seed.
* ``cifar``: CIFAR-10-LT (imbalance 100) with ResNet-32 on one GPU, the 200-epoch recipe, 3 seeds.
  Needs a data root (the image-folder tree or its .tar.gz, or torchvision's CIFAR files).
* ``cifar-cpu``: the same CIFAR-10-LT images on a CPU with the reduced recipe of the ResNet-8 presets
  (``lt_paper.train.presets.CPU_RECIPE_CHANGES``), one seed. Reads ``data/downloads/cifar10-jpeg.tar.gz``
  unless another data root is given.
* ``paper``: ImageNet-LT (ResNet-50, ResNeXt-50) and iNaturalist-2018 (ResNet-50).
"""

from __future__ import annotations

from ..train.presets import CPU_ARCH, CPU_EPOCHS

NOTEBOOKS = (
    "table1_3_main_results",
    "table4_ala_ablation",
    "table5_router_ablation",
    "figure1_hard_samples",
    "figure2_adjusting_terms",
    "figure3_moe_architecture",
    "figure4_router_weights",
    "explore_hard_samples",
)

_SMOKE = dict(prefix="smoke", dataset="digits_lt", arch="resnet8", epochs=30, seeds=[0], device="cpu",
              data_root=None)
# cifar: one GPU; a notebook's rows train as one batched ensemble (run_rows' default on CUDA: one
# ResNet-32 run leaves a GPU mostly idle)
_CIFAR = dict(prefix="cifar10_lt", dataset="cifar10_lt", arch="resnet32", epochs=200, seeds=[0, 1, 2],
              device="cuda", data_root=None, parallel=1)
# cifar-cpu: real CIFAR-10-LT on a laptop (docs/real-data-on-a-laptop.md); the ResNet-8 presets carry the
# rest of the reduced recipe. On the CPU run_rows trains one run after another (the fastest CPU path).
CIFAR_CPU_DATA = "data/downloads/cifar10-jpeg.tar.gz"  # relative to the repository root
_CIFAR_CPU = dict(prefix="cifar10_lt", dataset="cifar10_lt", arch=CPU_ARCH, epochs=CPU_EPOCHS, seeds=[0],
                  device="cpu", data_root=CIFAR_CPU_DATA)
_IMAGENET = dict(prefix="imagenet_lt", dataset="imagenet_lt", arch="resnext50", epochs=100, seeds=[0],
                 device="cuda", data_root=None)

# Each profile's parameters for a notebook it does not list (a notebook added later).
PROFILE_DEFAULTS = {"smoke": _SMOKE, "cifar": _CIFAR, "cifar-cpu": _CIFAR_CPU, "paper": _IMAGENET}

# Notebook name -> list of (output folder, parameters). Table 1/3 runs once per dataset in `paper`.
PROFILES: dict[str, dict[str, list[tuple[str, dict]]]] = {
    profile: {nb: [(nb, dict(defaults))] for nb in NOTEBOOKS} for profile, defaults in PROFILE_DEFAULTS.items()}
PROFILES["paper"]["table1_3_main_results"] = [
    ("table1_imagenet_lt_resnet50", dict(_IMAGENET, arch="resnet50")),
    ("table1_imagenet_lt_resnext50", dict(_IMAGENET)),
    ("table3_inat2018_resnet50", dict(_IMAGENET, prefix="inat2018", dataset="inat2018", arch="resnet50")),
]

# Where each profile's runs are published (relative to the repository root): what a notebook reads with
# ``train = False`` and ``runs_dir = None``. `paper` has no publication yet.
PUBLISHED_RUNS = {"smoke": "results/smoke/runs", "cifar-cpu": "results/cifar10_lt_if100_cpu/runs",
                  "cifar": "results/cifar10_lt_if100/runs"}
# The parameters a profile fills in a notebook (those left None there), besides runs_dir.
PROFILE_KEYS = ("prefix", "dataset", "arch", "epochs", "seeds", "device", "data_root")


def check_profile(profile: str, what: str = "profile") -> None:
    """ValueError naming the valid profiles unless ``profile`` is one."""
    if profile not in PROFILES:
        raise ValueError(f"unknown {what} {profile!r}; valid profiles are {sorted(PROFILES)}")


def jobs_for(profile: str, only: str | None = None) -> list[tuple[str, str, dict]]:
    """(notebook, output folder, parameters) for a profile; ``only`` keeps names containing it."""
    check_profile(profile)
    jobs = [(nb, folder, params) for nb, runs in PROFILES[profile].items() for folder, params in runs]
    if only:
        jobs = [j for j in jobs if only in j[0] or only in j[1]]
        if not jobs:
            raise ValueError(f"--only {only!r} matches no notebook; notebooks are {list(NOTEBOOKS)}")
    return jobs


def profile_parameters(profile: str, notebook: str, train: bool = True) -> dict:
    """The parameters ``profile`` runs ``notebook`` with (its first job; a notebook the profile does not
    list gets the profile's defaults), ``PROFILE_KEYS`` and ``runs_dir``: with ``train`` False the
    profile's published runs, else the shared cache ``runs``."""
    check_profile(profile)
    jobs = PROFILES[profile].get(notebook) or [(notebook, PROFILE_DEFAULTS[profile])]
    params = {k: jobs[0][1][k] for k in PROFILE_KEYS}
    params["runs_dir"] = PUBLISHED_RUNS.get(profile, "runs") if not train else "runs"
    return params


def profiles_running(prefix: str, arch: str, epochs: int) -> list[str]:
    """The profiles whose notebooks run ``prefix``/``arch`` for ``epochs`` epochs (to name the profile
    of runs found in a folder)."""
    return [profile for profile, notebooks in PROFILES.items()
            if any((params["prefix"], params["arch"], params["epochs"]) == (prefix, arch, epochs)
                   for jobs in notebooks.values() for _, params in jobs)]
