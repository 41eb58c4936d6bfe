"""A Ray Tune search space seen as a list of axes that a searcher samples, mutates and encodes.

A *genome* is one JSON-able gene per axis (see :mod:`efficient_search.searchers.axes`);
``SearchSpace.decode`` turns it into the nested config Tune expects, constants included::

    space = SearchSpace.from_ray({"lr": tune.loguniform(1e-4, 1e-1), "depth": 4})
    genome = space.sample(np.random.default_rng(0))
    space.decode(genome)  # {"lr": 0.0031..., "depth": 4}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ray.tune.search.sample import Domain
from ray.tune.search.variant_generator import parse_spec_vars

from efficient_search.searchers.axes import (
    Axis,
    ChoiceAxis,
    FloatAxis,
    Gene,
    Genome,
    IntAxis,
    Path,
    axis_from_domain,
    path_name,
    survives_json,
)


@runtime_checkable
class SpaceLike(Protocol):
    """Our own spaces: a Ray param space, optionally with ``cost(config)`` and cost ``bins``."""

    param_space: Mapping[str, Any]


class SearchSpace:
    """A parsed Ray Tune param space: its axes, its constants and how to build configs.

    ``template`` is the param space with ``None`` where the axes go.
    """

    def __init__(self, axes: Sequence[Axis], template: Mapping[str, Any]):
        self.axes: tuple[Axis, ...] = tuple(axes)
        self._template = copy.deepcopy(dict(template))
        self._by_path = {axis.path: i for i, axis in enumerate(self.axes)}
        resolved, _, _ = parse_spec_vars(copy.deepcopy(self._template))
        self.constants: list[tuple[Path, Any]] = [(p, v) for p, v in resolved
                                                   if tuple(p) not in self._by_path]

    @classmethod
    def from_ray(cls, spec: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(spec, Mapping):
            raise TypeError(f"A search space must be a dict of Ray Tune domains, but got {spec!r}.")
        _, domains, grids = parse_spec_vars(dict(spec))
        if grids:
            raise ValueError(
                f"Search space entry `{path_name(grids[0][0])}` is a grid search, which an "
                "evolutionary search cannot sample. Fix: use tune.choice([...]) instead."
            )
        return cls([axis_from_domain(p, d) for p, d in domains], _without_domains(spec))

    def describe(self) -> dict[str, Any]:
        """JSON-able; ``from_description`` rebuilds the space when every value survives JSON."""
        template = self._template if survives_json(self._template) else None
        return {"axes": [axis.describe() for axis in self.axes], "template": template}

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> SearchSpace | None:
        """The space ``describe`` saw, or ``None`` when it held values JSON cannot carry."""
        axes: list[Axis] = []
        for item in description["axes"]:
            fields = {k: v for k, v in item.items() if k not in ("type", "path", "exact")}
            path = tuple(item["path"])
            if item["type"] == "float":
                axes.append(FloatAxis(path, **fields))
            elif item["type"] == "int":
                axes.append(IntAxis(path, **fields))
            elif item["exact"]:
                axes.append(ChoiceAxis(path, tuple(item["categories"])))
            else:
                return None
        template = description["template"]
        return None if template is None else cls(axes, template)

    def decode(self, genome: Sequence[Gene]) -> dict[str, Any]:
        config = _fresh_copy(self._template)
        for axis, gene in zip(self.axes, genome, strict=True):
            _assign(config, axis.path, axis.decode(gene))
        return config

    def encode_point(self, point: Mapping[str, Any], where: str) -> list[Gene | None]:
        """Genes of a (possibly partial) nested config; ``None`` where the point leaves a gap."""
        genes: list[Gene | None] = [None] * len(self.axes)
        constants = dict(self.constants)
        for path, value in _leaves(point, stops=set(self._by_path) | set(constants)):
            if path in self._by_path:
                i = self._by_path[path]
                try:
                    genes[i] = self.axes[i].encode(value)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"{where}: {error}") from None
            elif path in constants:
                if constants[path] != value:
                    raise ValueError(f"{where} sets `{path_name(path)}` = {value!r}, but the "
                                     f"space fixes it to {constants[path]!r}.")
            else:
                raise ValueError(
                    f"{where} has `{path_name(path)}`, which is not in the search space "
                    f"(axes: {', '.join(path_name(a.path) for a in self.axes)}). "
                    "Fix: give points as nested dicts shaped like the space."
                )
        return genes

    def encode_whole(self, point: Mapping[str, Any], where: str) -> Genome:
        """The genome of a config that gives every searched axis (a ``ValueError`` names the gaps)."""
        genes = self.encode_point(point, where)
        missing = [path_name(axis.path) for axis, gene in zip(self.axes, genes, strict=True) if gene is None]
        if missing:
            raise ValueError(f"{where}: the point {dict(point)!r} lacks axes the space searches "
                             f"({', '.join(missing)}). Fix: give a value for every searched axis.")
        return [gene for gene in genes if gene is not None]

    @staticmethod
    def key(genome: Sequence[Gene]) -> tuple[Gene, ...]:
        """A hashable identity of a genome (each axis keeps one gene type, so equality is exact)."""
        return tuple(genome)

    def sample(self, rng: np.random.Generator) -> Genome:
        return [axis.sample(rng) for axis in self.axes]

    def fill(self, genes: Sequence[Gene | None], rng: np.random.Generator) -> Genome:
        """The genes given, gaps sampled at random."""
        return [axis.sample(rng) if g is None else g for axis, g in zip(self.axes, genes, strict=True)]

    def corners(self) -> list[Genome]:
        """The largest, smallest and middle configs: every axis at its upper end, lower end, middle."""
        return [[axis.high() for axis in self.axes], [axis.low() for axis in self.axes],
                [axis.middle() for axis in self.axes]]

    def mutate(self, genome: Sequence[Gene], rng: np.random.Generator) -> Genome:
        """A copy of ``genome`` with exactly one axis changed (none if every axis is fixed)."""
        child = list(genome)
        mutable = [i for i, axis in enumerate(self.axes) if not axis.fixed]
        if mutable:
            i = mutable[int(rng.integers(len(mutable)))]
            child[i] = self.axes[i].mutate(child[i], rng)
        return child


def _without_domains(value: Any) -> Any:
    if isinstance(value, Domain):
        return None
    if isinstance(value, Mapping):
        return {k: _without_domains(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_domains(v) for v in value]
    return copy.deepcopy(value)


_ATOMS = (str, int, float, bool, type(None))


def _fresh_copy(value: Any) -> Any:
    """A deep copy; plain dicts, lists and scalars are copied directly (searchers decode thousands of
    genomes per decision), anything else through ``copy.deepcopy``."""
    if type(value) is dict:
        return {k: _fresh_copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_fresh_copy(v) for v in value]
    if isinstance(value, _ATOMS):
        return value
    return copy.deepcopy(value)


def _assign(config: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def _leaves(point: Mapping[str, Any], stops: set[Path], prefix: Path = ()) -> list[tuple[Path, Any]]:
    """(path, value) pairs of a nested point; a path in ``stops`` is a leaf even if a dict."""
    leaves: list[tuple[Path, Any]] = []
    for key, value in point.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and path not in stops:
            leaves.extend(_leaves(value, stops, path))
        else:
            leaves.append((path, value))
    return leaves


def as_search_space(space: Mapping[str, Any] | SpaceLike) -> SearchSpace:
    """Accept a Ray param space or one of our spaces (anything with ``param_space``)."""
    if isinstance(space, SpaceLike) and not isinstance(space, Mapping):
        return SearchSpace.from_ray(space.param_space)
    return SearchSpace.from_ray(space)
