"""Packaging: the requirement sets, torch-free ONNX serving, the bentofiles and the Dockerfile they render.

The container itself is built and run by scripts/ci-containers.sh (a stage of .ci/run).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from models.store import save_package
from tests.conftest import DEFAULT_PACKAGE, REPO
from tests.live_service import free_port

REQUIREMENTS = REPO / "requirements"
SETS = ("serving", "gpu", "dev")
TORCH = "2.13.0"
# Wheels PyPI's torch pulls on Linux; dev.txt leaves them to torch's own exact pins (see make lock).
CUDA_ONLY = re.compile(r"^(nvidia-(?!ml-py).*|cuda-.*|triton)$")
CPU_ONLY = {"openvino", "openvino-telemetry"}  # the CPU runtime: the lock script leaves it out of gpu.txt
# Installer tooling that a venv's site-packages imports by itself (setuptools' distutils shim).
TOOLING = {"pip", "setuptools", "_distutils_hack", "pkg_resources"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file (comments and options ignored)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"{path.name}: '{line}' is not pinned with =="
        pins[_normalise(name.split("[")[0])] = version.strip()
    return pins


LOCKS = {name: _pins(REQUIREMENTS / f"{name}.txt") for name in SETS}


# --- requirement sets --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SETS)
def test_each_lock_pins_what_its_in_file_asks_for(name):
    """Every direct requirement (with the files it includes) is in the lock at the same version."""
    lock = LOCKS[name]
    stack, asked = [REQUIREMENTS / f"{name}.in"], {}
    while stack:
        path = stack.pop()
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("-r "):
                stack.append(path.parent / line[3:].strip())
        asked.update(_pins(path))
    if name == "gpu":
        asked = {pkg: version for pkg, version in asked.items() if pkg not in CPU_ONLY}
    stale = {pkg: (version, lock.get(pkg)) for pkg, version in asked.items() if lock.get(pkg) != version}
    assert not stale, f"requirements/{name}.txt is stale ((.in, .txt) versions): {stale}; run make lock"


def test_serving_set_has_no_torch_transformers_or_training_packages():
    serving = set(LOCKS["serving"])
    for package in ("torch", "transformers", "safetensors", "accelerate", "optuna", "matplotlib", "pandas", "onnx"):
        assert package not in serving
    assert not [p for p in serving if CUDA_ONLY.match(p)]
    assert {"bentoml", "onnxruntime", "tokenizers", "numpy", "pydantic", "pydantic-settings"} <= serving


def test_sets_nest_and_agree_on_every_version():
    """serving (less OpenVINO) ⊂ gpu ⊂ dev (less the CUDA wheels), each package at one version everywhere."""
    serving, gpu, dev = (LOCKS[name] for name in SETS)
    assert CPU_ONLY <= serving.keys() and not CPU_ONLY & gpu.keys() and CPU_ONLY <= dev.keys()
    assert serving.keys() - CPU_ONLY <= gpu.keys()
    assert {p for p in gpu if not CUDA_ONLY.match(p)} <= dev.keys()
    for small, large in ((serving, gpu), (gpu, dev)):
        differ = {p: (v, large[p]) for p, v in small.items() if p in large and large[p] != v}
        assert not differ, differ
    assert gpu["torch"] == dev["torch"] == TORCH
    assert any(CUDA_ONLY.match(p) for p in gpu), "gpu.txt should pin torch's CUDA wheels"
    assert not any(CUDA_ONLY.match(p) for p in dev), "dev.txt must not force CUDA wheels onto CPU machines"


def test_install_and_ci_use_the_locks():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "requirements/dev.txt" in makefile
    ci = (REPO / ".ci/run").read_text(encoding="utf-8")
    assert "scripts/ci-containers.sh" in ci and "scripts/ci-client.sh" in ci
    assert not list(REPO.glob("requirements*.txt")), "the requirement files live in requirements/"


# --- the service's pyproject.toml and the client distribution (client/) -------------------------


def _toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_the_service_installs_its_locked_serving_set():
    """`pip install .` brings requirements/serving.txt (".[gpu]": gpu.txt), nothing re-pinned by hand."""
    config = _toml(REPO / "pyproject.toml")
    assert config["build-system"]["build-backend"] == "setuptools.build_meta"
    assert config["build-system"]["requires"] == [f"setuptools=={LOCKS['dev']['setuptools']}"]
    assert config["project"]["requires-python"] == ">=3.11,<3.12"  # what the locks are resolved for
    assert set(config["project"]["dynamic"]) == {"dependencies", "optional-dependencies"}
    dynamic = config["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements/serving.txt"]}
    assert dynamic["optional-dependencies"] == {"gpu": {"file": ["requirements/gpu.txt"]}}
    assert "dependencies" not in config["project"]


CLIENT = REPO / "client"


def _client_requirements() -> dict[str, Requirement]:
    requirements = (Requirement(line) for line in _toml(CLIENT / "pyproject.toml")["project"]["dependencies"])
    return {requirement.name: requirement for requirement in requirements}


def test_the_client_depends_on_exactly_what_it_imports():
    imported = set()
    for path in (REPO / "ko_sts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"ko_sts", "__future__"}
    distributions = {_normalise(dist) for module in third_party for dist in packages_distributions()[module]}
    assert distributions == {"httpx", "aiohttp", "yarl", "grpcio", "protobuf"}
    assert set(_client_requirements()) == distributions


def test_the_client_accepts_the_generated_code_and_the_serving_lock():
    """Its floors are what the committed gRPC code checks at import; the service's own versions satisfy it."""
    from ko_sts.v1 import similarity_pb2_grpc

    generated = (REPO / "ko_sts/v1/similarity_pb2.py").read_text(encoding="utf-8")
    gencode = ".".join(re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", generated).groups())
    requirements = _client_requirements()
    assert requirements["grpcio"].specifier == f">={similarity_pb2_grpc.GRPC_GENERATED_VERSION},<2"
    assert requirements["protobuf"].specifier == f">={gencode},<{int(gencode.split('.')[0]) + 1}"
    for name in ("httpx", "aiohttp", "yarl", "grpcio", "protobuf"):  # what the service runs too
        assert LOCKS["serving"][name] in requirements[name].specifier, name
    assert _toml(CLIENT / "pyproject.toml")["project"]["requires-python"] == ">=3.10"


def test_the_clients_test_tools_are_the_dev_sets():
    assert _pins(CLIENT / "requirements-test.txt") == {"pytest": LOCKS["dev"]["pytest"]}


# --- serving without torch ---------------------------------------------------------------------

# Runs in a fresh interpreter that cannot see the packages outside requirements/serving.txt
# (they raise ModuleNotFoundError, as in the CPU image), so the service must import, load its
# model and score without them; optional imports fall back as they would in the image.
PROBE = """
import json, os, sys
from importlib.abc import MetaPathFinder

HIDDEN = set(json.loads(os.environ["PROBE_HIDDEN"]))


class OnlyServingPackages(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r} (outside requirements/serving.txt)", name=name)
        return None


sys.meta_path.insert(0, OnlyServingPackages())
import service

if sys.argv[1] == "instance":
    service.KoSTS()  # loads the model and scores the warm-up batch: the whole CPU serving path
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _modules_outside_serving() -> set[str]:
    """Top-level modules that only packages outside requirements/serving.txt provide."""
    serving = set(LOCKS["serving"])
    return {
        module
        for module, dists in packages_distributions().items()
        if module not in TOOLING and not any(_normalise(d) in serving for d in dists)
    }


@pytest.fixture(scope="module")
def default_tag() -> str:
    return str(save_package(DEFAULT_PACKAGE).tag)


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
@pytest.mark.parametrize("stage", ["import", "instance"])
def test_cpu_serving_imports_only_the_serving_set(stage, backend, default_tag):
    """KO_STS_BACKEND=openvino or onnx, fresh interpreter: no torch, no transformers, no training code,
    nothing outside the serving set."""
    hidden = _modules_outside_serving()
    assert {"torch", "transformers", "pandas"} <= hidden
    env = {
        **os.environ,
        "KO_STS_BACKEND": backend,
        "KO_STS_DEVICE": "cpu",
        "KO_STS_MODEL_TAG": default_tag,
        "KO_STS_GRPC_PORT": str(free_port()),  # the instance starts the gRPC server too
        "PROBE_HIDDEN": json.dumps(sorted(hidden)),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, stage], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "torch" not in loaded and "transformers" not in loaded
    assert "training" not in loaded
    assert not loaded & hidden


# --- bentofiles and the Dockerfile -------------------------------------------------------------

BENTOFILES = {"bentofile.yaml": "serving", "bentofile-gpu.yaml": "gpu"}


def _bentofile(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(("bentofile", "requirements"), BENTOFILES.items())
def test_bentofile_packs_the_service_and_one_requirement_set(bentofile, requirements):
    config = _bentofile(bentofile)
    assert config["service"] == "service:KoSTS"
    assert config["python"]["requirements_txt"] == f"requirements/{requirements}.txt"
    include = config["include"]
    assert {"service.py", "models/*.py", "serving/**/*.py", "ko_sts/**/*.py"} <= set(include)
    assert not [pattern for pattern in include if pattern.startswith(("models/default", "training", "data"))]
    docker = config["docker"]
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", docker["base_image"])
    assert (REPO / docker["dockerfile_template"]).is_file()


def _dockerfile(bentofile: str, tmp_path: Path) -> str:
    from bentoml._internal.bento.build_config import BentoBuildConfig
    from bentoml._internal.container.generate import generate_containerfile

    with open(REPO / bentofile, encoding="utf-8") as handle:
        config = BentoBuildConfig.from_yaml(handle).with_defaults()
    return generate_containerfile(
        config.docker, str(REPO), conda=config.conda, bento_fs=tmp_path, enable_buildkit=False, add_header=False
    )


@pytest.mark.parametrize("bentofile", BENTOFILES)
def test_dockerfile_is_hardened_and_takes_the_base_as_a_build_argument(bentofile, tmp_path):
    from bentoml._internal.container.generate import BENTO_UID_GID

    dockerfile = _dockerfile(bentofile, tmp_path)
    lines = [line.strip() for line in dockerfile.splitlines()]
    base = _bentofile(bentofile)["docker"]["base_image"]
    assert lines.index(f"ARG BASE_IMAGE={base}") < lines.index("FROM ${BASE_IMAGE} AS base-container")
    assert "EXPOSE 3000 50051" in lines
    assert f"USER {BENTO_UID_GID}:{BENTO_UID_GID}" in lines  # numeric: runAsNonRoot can verify it
    assert "STOPSIGNAL SIGTERM" in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines) and "/readyz" in dockerfile
    assert "COPY . ./" in lines, "the bento (code, model) must be copied root-owned, without --chown"
    assert "ENV BENTOML_HOME=/tmp/bentoml \\" in lines
    assert "pip uninstall --yes --quiet uv" in dockerfile and "install.sh" in dockerfile
    assert "echo 0 > /home/bentoml/intel/openvino_telemetry" in dockerfile  # no consent warning at each start
    env = _bentofile(bentofile)["docker"]["env"]
    assert f"ARG KO_STS_BACKEND={env['KO_STS_BACKEND']}" in lines


def test_the_gpu_image_installs_a_c_compiler_for_torch_compile(tmp_path):
    script = _bentofile("bentofile-gpu.yaml")["docker"]["setup_script"]
    assert "gcc" in (REPO / script).read_text(encoding="utf-8").split()
    lines = [line.strip() for line in _dockerfile("bentofile-gpu.yaml", tmp_path).splitlines()]
    run = next(i for i, line in enumerate(lines) if line.startswith("RUN sh ") and "setup_script" in line)
    assert run < next(i for i, line in enumerate(lines) if "install.sh" in line)  # as root, before the venv
    assert not [line for line in _dockerfile("bentofile.yaml", tmp_path).splitlines() if "setup_script" in line]


@pytest.mark.slow
def test_bentoml_build_packs_the_default_model_and_only_serving_requirements(default_tag, tmp_path):
    env = {**os.environ, "KO_STS_MODEL_TAG": default_tag}
    bentoml = Path(sys.executable).parent / "bentoml"
    result = subprocess.run(
        [str(bentoml), "build", "-f", "bentofile.yaml", "--output", "tag", "."],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tag = re.search(r"__tag__:(\S+)", result.stdout).group(1)

    import bentoml as bentoml_api

    bento = Path(bentoml_api.bentos.get(tag).path)
    info = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    assert [m["tag"] for s in info["services"] for m in s["models"]] == [default_tag]
    sources = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*") if p.is_file()}
    assert "service.py" in sources and "models/scorer.py" in sources and "serving/settings.py" in sources
    generated = {p.relative_to(REPO).as_posix() for p in REPO.glob("ko_sts/**/*.py")}  # gRPC code
    assert generated <= sources
    assert not [s for s in sources if s.startswith(("training/", "models/default/", "data/", "tests/"))]
    packed = _pins(bento / "env/python/requirements.txt")
    assert packed == LOCKS["serving"]
