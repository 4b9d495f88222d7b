"""A user's install: ``pip install .`` (not editable) into a fresh virtual environment gives the
``parallel-lstm`` command; every tool answers ``--help`` without starting work, and the harness runs
from a folder holding the user's own ``data.py`` and ``reports.py`` (names the install must not take).

The fresh environment borrows this one's installed packages (numpy, numba, numba-cuda's import hook,
...) as links in a folder of their own, all but this environment's own install of the project
(editable in CI), so the wheel is all the fresh environment knows of the project, and no download is needed.
"""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from parallel_lstm.reports.commands import COMMAND, TOOLS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lstm_numpy", "lstm_numba_cpu", "lstm_numba_cuda", "data", "reports")
TOP_LEVEL = (*PACKAGES, "run_comparison")
USERS_OWN = "raise SystemExit('the user\\'s own {name}.py was imported instead of the project\\'s')\n"


def run(argv, timeout=300, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def can_build_without_isolation() -> bool:
    """This environment's setuptools is recent enough for pyproject.toml (no download needed)."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 68
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin folder of a fresh virtual environment with the project's wheel installed."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"            # a copy, since a build leaves build/ and *.egg-info in its source folder
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "run_comparison.py"):
        shutil.copy(ROOT / name, source / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "results", "figures"))
    isolation = ["--no-build-isolation"] if can_build_without_isolation() else []
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "--wheel-dir",
         str(root / "wheels"), str(source)])
    wheel, = (root / "wheels").glob("parallel_lstm-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    borrowed = root / "borrowed"
    borrowed.mkdir()
    for folder in map(Path, site.getsitepackages()):
        for entry in folder.iterdir():
            if "parallel_lstm" not in entry.name.lower() and not (borrowed / entry.name).exists():
                (borrowed / entry.name).symlink_to(entry)
    # addsitedir also runs the borrowed .pth files (numba-cuda's hook that serves numba.cuda)
    (purelib / "borrowed.pth").write_text(f"import site; site.addsitedir({str(borrowed)!r})\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)])
    return python.parent


@pytest.fixture
def users_folder(tmp_path) -> Path:
    """A working folder with modules named like the repository's top level, as a user may have."""
    for name in ("data", "reports"):
        (tmp_path / f"{name}.py").write_text(USERS_OWN.format(name=name))
    return tmp_path


def test_the_install_puts_only_the_namespace_into_site_packages(installed):
    python = installed / "python"
    listing = run([str(python), "-c", "import sysconfig, os; print('\\n'.join(os.listdir("
                                      "sysconfig.get_path('purelib'))))"]).stdout.split()
    assert "parallel_lstm" in listing
    assert not set(TOP_LEVEL) & {name.removesuffix(".py") for name in listing}
    where = run([str(python), "-c", "import parallel_lstm.lstm_numpy as m; print(m.__file__)"]).stdout
    assert Path(where.strip()).is_relative_to(installed.parent), "the checkout, not the wheel, was imported"


def test_the_command_lists_every_tool_and_refuses_an_unknown_one(installed, users_folder):
    listing = run([str(installed / COMMAND), "--help"], cwd=users_folder).stdout
    assert all(f"  {tool} " in listing for tool in TOOLS)
    done = subprocess.run([str(installed / COMMAND), "train"], capture_output=True, text=True, cwd=users_folder)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "unknown tool 'train'" in done.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_answers_help_without_starting_work(installed, users_folder, tool):
    done = run([str(installed / COMMAND), tool, "--help"], cwd=users_folder, timeout=60)
    assert done.stdout.startswith(f"usage: {COMMAND} {tool} ") and done.stderr == ""


def test_a_tiny_compare_runs_from_a_folder_with_a_data_module(installed, users_folder):
    done = run([str(installed / COMMAND), "compare", "--workload", "seed", "--backends", "numpy", "--epochs", "2",
                "--repeats", "1", "--out", "results", "--quiet"], cwd=users_folder)
    written = sorted(path.suffix for path in (users_folder / "results").iterdir())
    assert written == [".csv", ".json"], done.stdout
    # the module form works there too, and its one-sentence errors name the command
    done = subprocess.run([str(installed / "python"), "-m", "parallel_lstm.run_comparison", "--epochs", "0"],
                          capture_output=True, text=True, cwd=users_folder)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"{COMMAND} compare: error: argument --epochs: must be a positive integer")


def test_the_checkout_script_runs_without_an_install(tmp_path):
    """``python run_comparison.py`` maps the checkout onto parallel_lstm itself, installed or not."""
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.argv = ['run_comparison.py', '--help'];"
                           f"sys.path[:0] = {[str(ROOT)] + site.getsitepackages()!r};"
                           f"import runpy; runpy.run_path({str(ROOT / 'run_comparison.py')!r}, run_name='__main__')"],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0 and done.stdout.startswith(f"usage: {COMMAND} compare "), done.stderr


def test_no_module_imports_the_repository_folders_by_their_bare_names():
    """From the repository root `import data` would work and hide the bug until a user installs."""
    # an import statement, also one inside a string that a subprocess runs (after a quote, ";" or "(")
    bare = re.compile(rf"(^\s*|[;\"'(]\s*)(from|import) ({'|'.join(TOP_LEVEL)})\b", re.M)
    sources = [ROOT / "run_comparison.py", *ROOT.glob("tests/**/*.py"),
               *(path for name in TOP_LEVEL for path in (ROOT / name).glob("**/*.py"))]
    offenders = [f"{path.relative_to(ROOT)}: {match.group(0).strip()}" for path in sources
                 for match in bare.finditer(path.read_text(encoding="utf-8"))]
    assert len(sources) > 60 and offenders == []
