"""The bundle that the offline GPU check (scripts/gpu_check.py, issue 27) carries to a GPU machine with no network.

usage: .venv/bin/python scripts/gpu_bundle.py --out _build/gpu-bundle [--python-version 3.12]

The GPU image (one H200, python3 3.12 with torch, numpy, scipy, matplotlib, ...) lacks a few packages the book
imports: IPython, ipywidgets, PyWavelets, ripser, persim and what they need. This script

1. computes the closure of the book's runtime requirements (pyproject.toml's ``[project].dependencies``, plus
   ipython and ipywidgets) by walking the ``Requires-Dist`` of the packages installed in the running (dev) venv,
   markers evaluated for CPython ``--python-version`` on x86-64 Linux, extras skipped;
2. drops every package the GPU image already has (:data:`GPU_IMAGE`) -- and does not walk into it: the image holds
   its dependencies -- and pins each remaining one at the version installed here (constraints.txt's);
3. downloads those as cp312 manylinux wheels (``pip download --no-deps --only-binary=:all:``) into ``OUT/wheels``;
4. copies Fashion-MNIST's four idx files into ``OUT/data`` (the GPU machine cannot download them);
5. writes ``OUT/manifest.json`` (each file with its size and sha256, the pins, the Python version, the date) and
   fails when the bundle plus the tree that travels with it (git's tracked and untracked-not-ignored files) is over
   the 64 MiB the device tool carries.

dldna_lite itself is not bundled: it travels as the working tree. Running it again downloads only what is missing
or does not match the sha256 of the previous manifest, and removes wheels that are no longer pinned.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
#: What the device tool carries at most: the working tree plus the carried paths (/work/.library/device/README.md).
LIMIT_BYTES = 64 * 2**20
#: Requirements of the book beyond pyproject.toml's list: what running a page's cells needs (scripts/gpu_check.py).
EXTRA_ROOTS = ("ipython", "ipywidgets")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

#: The Python packages of the GPU machine's image ('cuda', kind nvidia-h200), copied from
#: /work/.library/device/KINDS.md, section "Python packages already there" (as read there on 2026-11-17; the file
#: was read for this script on 2026-11-18). Versions there: torch 2.11.0+cu130, torchvision 0.26.0, numpy 2.5.2.
GPU_IMAGE = frozenset(canonicalize_name(n) for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp
""".split())


class BundleError(RuntimeError):
    """The bundle cannot be made (a package missing here, a failed download, no data) or is too large to carry."""


def marker_environment(python_version: str) -> dict[str, str]:
    """The environment markers of CPython ``python_version`` (e.g. "3.12") on x86-64 Linux, no extra selected."""
    env = default_environment()
    full = python_version if python_version.count(".") >= 2 else python_version + ".0"
    env.update(python_version=".".join(python_version.split(".")[:2]), python_full_version=full,
               implementation_name="cpython", platform_python_implementation="CPython", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", os_name="posix", extra="")
    return env


def root_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """What the book needs at run time: pyproject.toml's ``[project].dependencies`` and :data:`EXTRA_ROOTS`."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return [Requirement(text) for text in (*project["dependencies"], *EXTRA_ROOTS)]


def applies(req: Requirement, env: dict[str, str]) -> bool:
    """Whether ``req`` is needed in ``env``: no marker, or one that holds there (``extra == ...`` never does)."""
    return req.marker is None or req.marker.evaluate(env)


def closure(roots: list[Requirement], python_version: str = "3.12", image: frozenset[str] = GPU_IMAGE,
            distribution=importlib.metadata.distribution) -> dict[str, tuple[str, str]]:
    """``{canonical name: (distribution name, version installed here)}`` of every package that ``roots`` need,
    directly or through the ``Requires-Dist`` of the installed packages, that ``image`` does not have.

    A package of the image is neither pinned nor walked into. ``BundleError`` names the needed packages that are not
    installed here (they could not be pinned): install them in the venv first.
    """
    env = marker_environment(python_version)
    pins: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    todo = [req for req in roots if applies(req, env)]
    while todo:
        req = todo.pop(0)
        name = canonicalize_name(req.name)
        if name in image or name in pins or name in missing:
            continue
        try:
            dist = distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        pins[name] = (dist.metadata["Name"], dist.version)
        todo.extend(r for r in map(Requirement, dist.requires or []) if applies(r, env))
    if missing:
        raise BundleError(f"needed on the GPU machine but not installed in {sys.prefix}, so not pinned: "
                          f"{', '.join(sorted(missing))} (install them in the dev venv first, e.g. make setup)")
    return dict(sorted(pins.items()))


def constraint_mismatches(pins: dict[str, tuple[str, str]], constraints: Path = ROOT / "constraints.txt") -> list[str]:
    """The pins whose version differs from constraints.txt's ``name==version`` (the venv is out of date)."""
    wanted = {}
    for line in constraints.read_text().splitlines() if constraints.is_file() else []:
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(";")[0].split("==", 1)
            wanted[canonicalize_name(name.strip())] = version.strip()
    return [f"{name} {version} (constraints.txt: {wanted[name]})" for name, (_, version) in pins.items()
            if name in wanted and wanted[name] != version]


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_pin(path: Path) -> tuple[str, str] | None:
    """``(canonical name, version)`` of a wheel file, or ``None`` for anything else."""
    try:
        name, version, _, _ = parse_wheel_filename(path.name)
    except Exception:  # noqa: BLE001 - not a wheel name
        return None
    return str(name), str(version)


def _intact(path: Path, known: dict[str, str]) -> bool:
    """Whether a file already in the bundle can stay: its sha256 is the previous manifest's for it."""
    rel = path.relative_to(path.parents[1]).as_posix()
    return rel in known and sha256(path) == known[rel]


def download_wheels(pins: dict[str, tuple[str, str]], wheels: Path, python_version: str,
                    known: dict[str, str]) -> list[Path]:
    """One wheel per pin in ``wheels``: keep those the previous manifest (``known``: path -> sha256) vouches for,
    remove stale and damaged ones, download the rest with one ``pip download --no-deps``. Returns the wheels."""
    wheels.mkdir(parents=True, exist_ok=True)
    wanted = {name: version for name, (_, version) in pins.items()}
    have: dict[str, Path] = {}
    for path in sorted(wheels.iterdir()):
        pin = wheel_pin(path)
        if pin is not None and wanted.get(pin[0]) == pin[1] and pin[0] not in have and _intact(path, known):
            have[pin[0]] = path
        else:
            path.unlink()   # stale (another version, no longer needed), damaged, or not a wheel
    todo = [f"{pins[name][0]}=={version}" for name, version in wanted.items() if name not in have]
    if todo:
        print(f"gpu_bundle: downloading {len(todo)} wheel(s): {' '.join(todo)}", flush=True)
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        abi = "cp" + python_version.replace(".", "")[:3]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "--abi", abi, *platforms,
               "-d", str(wheels), *todo]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise BundleError(f"pip download failed (exit {done.returncode}) for {' '.join(todo)}:\n"
                              f"{done.stderr[-3000:]}\n(a package with no {abi} manylinux wheel needs another "
                              "--platform, see /work/.library/device/README.md)")
    found = {}
    for path in sorted(wheels.iterdir()):
        pin = wheel_pin(path)
        if pin is not None and wanted.get(pin[0]) == pin[1]:
            found.setdefault(pin[0], path)
    absent = sorted(set(wanted) - set(found))
    if absent:
        raise BundleError(f"pip download left no wheel for {', '.join(absent)} in {wheels}")
    for path in wheels.iterdir():
        if path not in found.values():
            path.unlink()   # e.g. a second wheel pip fetched under another name spelling
    return [found[name] for name in sorted(found)]


def fashion_mnist_files() -> list[Path]:
    """The four Fashion-MNIST idx files (gzipped or not) that dldna_lite.data would read, from its first folder
    (``$DLDNA_DATA_DIR``, /usr/share/datasets/fashion-mnist, then torchvision's download in the cache folder) that
    holds both splits."""
    from dldna_lite import data   # imports torch: only here, so that the tests of closure() stay light

    folders = [*data.candidate_dirs(), data.cache_dir() / "torchvision"]
    for folder in folders:
        splits = [data._find_in(folder, split) for split in data.SPLITS]
        if all(splits):
            return [path for pair in splits for path in pair]
    raise BundleError("Fashion-MNIST's idx files were not found in " + ", ".join(map(str, folders))
                      + ": set DLDNA_DATA_DIR to a folder holding train-images-idx3-ubyte.gz and the three others")


def copy_data(files: list[Path], target: Path, known: dict[str, str]) -> list[Path]:
    """Copy ``files`` into ``target`` (skipping those the previous manifest vouches for); remove anything else."""
    target.mkdir(parents=True, exist_ok=True)
    names = {path.name for path in files}
    for path in target.iterdir():
        if path.name not in names:
            path.unlink()
    copied = []
    for source in files:
        dest = target / source.name
        if not (dest.is_file() and _intact(dest, known) and dest.stat().st_size == source.stat().st_size):
            shutil.copyfile(source, dest)
        copied.append(dest)
    return copied


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of what the device tool sends besides carried paths: git's tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.split(b"\0")
    paths = (root / name.decode() for name in listed if name)
    return sum(path.stat().st_size for path in paths if path.is_file() and not path.is_symlink())


def check_size(files: list[dict], tree: int, limit: int = LIMIT_BYTES) -> int:
    """The bytes that travel (bundle ``files``, manifest entries with ``bytes``, plus the ``tree``); ``BundleError``
    naming the largest files when they are over ``limit``."""
    total = tree + sum(entry["bytes"] for entry in files)
    if total > limit:
        largest = sorted(files, key=lambda entry: -entry["bytes"])[:5]
        names = ", ".join(f"{entry['path']} ({entry['bytes'] / 2**20:.1f} MiB)" for entry in largest)
        raise BundleError(f"the bundle ({(total - tree) / 2**20:.1f} MiB) plus the working tree ({tree / 2**20:.1f} "
                          f"MiB) is {total / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB the device tool carries; "
                          f"largest: {names}")
    return total


def previous_hashes(manifest: Path) -> dict[str, str]:
    """path -> sha256 of the files an earlier run's manifest lists (empty when there is none or it is unreadable)."""
    try:
        return {entry["path"]: entry["sha256"] for entry in json.loads(manifest.read_text())["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def build(out: Path, python_version: str = "3.12") -> dict:
    """Make or refresh the bundle in ``out``; return its manifest (also written to ``out/manifest.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    known = previous_hashes(manifest_path)
    pins = closure(root_requirements(), python_version)
    for line in constraint_mismatches(pins):
        print(f"gpu_bundle: warning: the venv's version differs from constraints.txt: {line}", flush=True)
    wheels = download_wheels(pins, out / "wheels", python_version, known)
    data = copy_data(fashion_mnist_files(), out / "data", known)
    files = [{"path": path.relative_to(out).as_posix(), "bytes": path.stat().st_size, "sha256": sha256(path)}
             for path in (*wheels, *data)]
    tree = tree_bytes()
    manifest = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python_version": python_version, "platforms": list(PLATFORMS),
        "packages": [{"name": dist, "version": version} for dist, version in pins.values()],
        "files": files, "bundle_bytes": sum(entry["bytes"] for entry in files), "tree_bytes": tree,
        "limit_bytes": LIMIT_BYTES,
    }
    manifest["fits"] = manifest["bundle_bytes"] + tree <= LIMIT_BYTES
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    check_size(files, tree)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line: build the bundle, print its size; exit 1 with the reason when it cannot be made or carried."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "gpu-bundle")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's python3 (default 3.12)")
    args = parser.parse_args(argv)
    try:
        manifest = build(args.out, args.python_version)
    except BundleError as err:
        print(f"gpu_bundle: error: {err}", file=sys.stderr)
        return 1
    mib = manifest["bundle_bytes"] / 2**20
    print(f"gpu_bundle: {len(manifest['packages'])} wheels + {len(manifest['files']) - len(manifest['packages'])} "
          f"data files = {mib:.1f} MiB in {args.out}; with the working tree "
          f"{(manifest['bundle_bytes'] + manifest['tree_bytes']) / 2**20:.1f} of {LIMIT_BYTES / 2**20:.0f} MiB")
    for package in manifest["packages"]:
        print(f"  {package['name']}=={package['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
