#!/usr/bin/env bash
# Fill the git-ignored .whl/ with the wheels the GPU machine lacks for running the notebooks there
# (papermill, nbclient, nbformat, ipykernel, jupyter_client and everything they need), for CPython 3.12
# on manylinux x86_64. The machine has no package index; scripts/gpu_window.sh installs these with
# `pip install --no-index --no-deps --target /tmp/site .whl/*.whl`.
#
# How the set is found: start from the packages above, read each downloaded wheel's Requires-Dist
# (extras skipped, markers evaluated for Python 3.12 on Linux x86_64), and download what is neither
# already downloaded nor on the machine's own package list (GPU_MACHINE_HAS below, the image's
# `pip list` as last read). Versions are those of this checkout's environment ($PYTHON's) where it has
# the package (the set the tests ran with), else the newest wheel for 3.12.
#
# Usage, from the repository root (needs network):  bash scripts/gpu_wheels.sh
# Knobs: PYTHON (python3): the interpreter whose pip downloads and whose versions are pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
WANTED="papermill nbclient nbformat ipykernel jupyter_client"
# The image 'cuda' of the GPU machines (packages already there; carried wheels would only shadow them).
GPU_MACHINE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox
etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet
httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64
--platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_35_x86_64"

mkdir -p "$DEST"

# The closure, computed by Python (packaging evaluates the markers); it calls pip for each new name.
"$PY" - "$DEST" "$WANTED" "$GPU_MACHINE_HAS" "$PLATFORMS" <<'PYEOF'
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

dest, wanted, machine_has, platforms = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
have = {canonicalize_name(n) for n in machine_has}
# Python 3.12 on Linux x86_64 (CPython), whatever runs this script
target_env = dict(default_environment(), python_version="3.12", python_full_version="3.12.3",
                  sys_platform="linux", platform_system="Linux", platform_machine="x86_64",
                  implementation_name="cpython", platform_python_implementation="CPython", os_name="posix")


def downloaded() -> dict:
    return {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in dest.glob("*.whl")}


def fetch(name: str) -> None:
    try:
        spec = f"{name}=={metadata.version(name)}"  # the version this checkout's environment tested
    except metadata.PackageNotFoundError:
        spec = name
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *platforms, "-d", str(dest), spec]
    print(f"gpu_wheels: {spec}", flush=True)
    subprocess.run(cmd, check=True)


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        lines = z.read(meta).decode().splitlines()
    names = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(dict(target_env, extra="")):
            continue  # an extra's requirement, or one for another Python / platform
        names.append(canonicalize_name(req.name))
    return names


todo = [canonicalize_name(n) for n in wanted]
while todo:
    name = todo.pop(0)
    if name in downloaded() or name in have:
        continue
    fetch(name)
    todo += requirements(downloaded()[name])
wheels = sorted(downloaded().values())
names = [canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels]
if len(set(names)) != len(names):
    sys.exit(f"gpu_wheels: two versions of one package in {dest}: remove the older one")
size = sum(w.stat().st_size for w in wheels)
print(f"gpu_wheels: {len(wheels)} wheels, {size / 2**20:.1f} MiB in {dest}/")
PYEOF
