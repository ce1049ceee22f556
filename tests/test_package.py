"""The installable package: pyproject's console scripts, the wheel's contents, scripts/ as thin entry points."""

import ast
import importlib
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _f:
    PYPROJECT = tomllib.load(_f)
SCRIPTS = PYPROJECT["project"]["scripts"]


def test_every_console_script_names_a_main_that_prints_its_help(capsys):
    assert len(SCRIPTS) == 9
    for name, target in SCRIPTS.items():
        module, func = target.split(":")
        main = getattr(importlib.import_module(module), func)
        with pytest.raises(SystemExit) as e:
            main(["--help"])
        assert e.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def test_each_script_calls_one_console_scripts_main():
    targets = set(SCRIPTS.values())
    called = set()
    for name in sorted(os.listdir(os.path.join(ROOT, "scripts"))):
        if name == "__init__.py":  # Bazel's runfiles add an empty one
            continue
        with open(os.path.join(ROOT, "scripts", name)) as f:
            tree = ast.parse(f.read())
        imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert len(imports) == 1 and [a.name for a in imports[0].names] == ["main"], name
        called.add(f"{imports[0].module}:main")
    assert called == targets


def test_no_module_edits_sys_path():
    offenders = []
    for top in ("tff_prune", "mobile", "scripts", "benchmarks", "tests"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path) as f:
                        if "sys.path.insert" in f.read() and path != os.path.abspath(__file__):
                            offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []


def test_the_wheel_holds_both_packages_and_the_commands(tmp_path):
    src, dist = tmp_path / "src", tmp_path / "dist"  # a copy: setuptools writes build/ beside pyproject.toml
    for name in ("tff_prune", "mobile"):
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), src)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = os.listdir(dist)
    assert wheels == ["tff_prune-0.1.0-py3-none-any.whl"]
    with zipfile.ZipFile(dist / wheels[0]) as z:
        names = set(z.namelist())
        entry_points = z.read("tff_prune-0.1.0.dist-info/entry_points.txt").decode()
    assert {"tff_prune/cli/run.py", "tff_prune/experiments.py", "tff_prune/pruning/graph.py",
            "mobile/cli/convert.py", "mobile/convert.py"} <= names
    for name, target in SCRIPTS.items():
        assert f"{name} = {target}" in entry_points


def test_benchmarks_import_what_they_find_when_run_as_scripts():
    """`python benchmarks/x.py` puts benchmarks/ (not the repository root) first on sys.path: a benchmark imports
    the installed packages and its sibling files, never ``benchmarks.<name>``."""
    import importlib.util

    folder = os.path.join(ROOT, "benchmarks")
    siblings = {name[:-3] for name in os.listdir(folder) if name.endswith(".py")}
    bad = []
    for name in sorted(siblings):
        with open(os.path.join(folder, name + ".py")) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else
                       [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for module in modules:
                top = module.split(".")[0]
                if top == "benchmarks" or (top not in siblings and importlib.util.find_spec(top) is None):
                    bad.append(f"{name}.py imports {module}")
    assert bad == []
