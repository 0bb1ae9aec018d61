"""The package as a user installs it: named configs found through importlib.resources, one
version string, and the wheel working from a fresh virtual environment outside the checkout."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest

import xlnet
from xlnet.config.run_config import NAMED_CONFIGS, named_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the wheel is built from; the rest of the checkout (tests, .venv, caches) stays behind.
SOURCES = ("pyproject.toml", "README.md", "configs", "xlnet", "preprocessing", "pretrain")


def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_packaged_configs_are_the_top_level_configs():
    top_level = sorted(name.removesuffix(".yaml") for name in os.listdir(
        os.path.join(ROOT, "configs")) if name.endswith(".yaml"))
    assert named_configs() == top_level == ["base", "large", "tiny"]
    for name in top_level:
        with open(os.path.join(ROOT, "configs", f"{name}.yaml")) as f:
            assert (NAMED_CONFIGS / f"{name}.yaml").read_text() == f.read()


def test_version_comes_from_pyproject():
    assert xlnet.__version__ == pyproject()["project"]["version"]
    result = subprocess.run([sys.executable, "-m", "xlnet", "--version"], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == f"xlnet {xlnet.__version__}", result.stderr


def test_extras_named_in_the_readme_exist():
    extras = pyproject()["project"]["optional-dependencies"]
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    documented = set(re.findall(r'pip install "xlnet-pipeline\[(\w+)\]"', readme))
    assert documented and documented <= set(extras)


def run(command, cwd, env, timeout=600):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        origin = os.path.join(ROOT, name)
        if os.path.isdir(origin):
            shutil.copytree(origin, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(origin, source / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("xlnet_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert {"xlnet/configs/tiny.yaml", "xlnet/configs/base.yaml"} <= set(archive.namelist())

    # A fresh environment holding only the wheel; the dependencies (TensorFlow, Beam, ...) are
    # the running interpreter's, seen through a .pth entry, which site appends after the
    # environment's own site-packages: the wheel's xlnet comes first.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = str(venv / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", str(wheel)], tmp_path, env)
    site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        tmp_path, env).stdout.strip()
    with open(os.path.join(site_packages, "shared-dependencies.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    located = run([python, "-c", "import xlnet; print(xlnet.__file__, xlnet.__version__)"],
                  work, env).stdout.split()
    assert located[0].startswith(site_packages) and located[1] == xlnet.__version__
    xlnet_command = str(venv / "bin" / "xlnet")
    assert "train-tokenizer" in run([xlnet_command, "--help"], work, env).stdout
    demo = run([xlnet_command, "demo", "--steps", "20", "--max-documents", "300"], work, env)
    assert "xlnet demo finished" in demo.stdout and "last loss" in demo.stdout
    assert (work / "xlnet-demo" / "export" / "hf" / "model.safetensors").exists()
