"""The Space builds as shipped: its requirements install into a fresh virtualenv, offline, with the
wheel that `make space-wheel` builds, and its app imports from that install."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = ROOT / "spaces" / "forgetting-explorer"


def _requirements() -> list[str]:
    lines = (SPACE_DIR / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_name_the_wheel_of_this_version():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    version = config["metadata"]["version"]
    assert f"./hf_forgetting-{version}-py3-none-any.whl" in _requirements()
    assert not any(line.startswith("hf-forgetting") for line in _requirements())  # no package index has it


@pytest.mark.slow
def test_space_requirements_install_into_a_fresh_virtualenv_offline(tmp_path):
    space = tmp_path / "space"
    shutil.copytree(SPACE_DIR, space, ignore=shutil.ignore_patterns("*.whl", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(space), str(ROOT)],
        check=True,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Offline: the dependencies are this environment's (a path entry, so their own .pth files stay
    # inactive and this checkout's editable install is invisible); only the wheel is installed.
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-r", "requirements.txt"],
        cwd=space, capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    check = (
        "import sys; sys.path.insert(0, '.'); import app, hf_forgetting; "
        "print(hf_forgetting.__file__); print(type(app.build_app()).__name__); "
        "from hf_forgetting.recipes import recipe_path; print(recipe_path('collect', 'config_demo.yaml').exists())"
    )
    result = subprocess.run([python, "-c", check], cwd=space, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    where, app_kind, recipe = result.stdout.split()
    assert where.startswith(site) and app_kind == "Blocks" and recipe == "True"
