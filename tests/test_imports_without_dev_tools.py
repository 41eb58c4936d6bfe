"""The package and the benchmarks import in an environment without the dev tools (pytest is a dev
dependency): every ``efficient_search`` module, ``efficient_search.testing`` included, and every
``benchmarks/*.py`` module, in a fresh interpreter where importing pytest fails."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_ONLY = ("pytest", "_pytest", "pytest_timeout", "hypothesis", "mypy")

IMPORT_ALL = textwrap.dedent("""
    import importlib, importlib.abc, json, pkgutil, sys, traceback
    from pathlib import Path

    BLOCKED, PACKAGES, BENCHMARKS = json.loads(sys.argv[1])

    class BlockDevTools(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, BlockDevTools())
    try:
        import pytest  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("pytest is still importable")

    names, failed = [], {}
    for package in PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + ".",
                                          onerror=lambda name: failed.setdefault(name, "walk")):
            if not info.name.endswith(".__main__"):  # importing that one runs the CLI
                names.append(info.name)
    sys.path.insert(0, BENCHMARKS)  # as when a benchmark script runs
    names += [p.stem for p in sorted(Path(BENCHMARKS).glob("*.py"))]
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:
            failed[name] = traceback.format_exc(limit=-3)
    print(json.dumps({"imported": sorted(set(names) - set(failed)), "failed": failed}))
""")


def packages() -> list[str]:
    """``efficient_search`` and the packages installed into it from other folders."""
    package_dirs = re.search(r"^package-dir = \{(.*)\}$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert package_dirs is not None
    return ["efficient_search", *re.findall(r'"(efficient_search\.[a-z_]+)" =', package_dirs[1])]


def test_every_module_and_benchmark_imports_without_pytest() -> None:
    args = json.dumps([DEV_ONLY, packages(), str(ROOT / "benchmarks")])
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failed"].items())
    imported = set(report["imported"])
    assert {"efficient_search.testing.replay", "efficient_search.testing.searchers",
            "efficient_search.testing.schedulers", "efficient_search.schedulers.hyperband",
            "efficient_search.search_spaces", "store", "faults"} <= imported
    assert len(imported) > 100
