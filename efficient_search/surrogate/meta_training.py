"""Build a surrogate from any meta-dataset and save it: what ``efficient-search meta-train`` runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate
from efficient_search.surrogate.loading import load_meta_dataset
from efficient_search.surrogate.meta_dataset import MetaDataset
from efficient_search.surrogate.settings import SurrogateSettings

LOADER_OPTIONS = ("metric", "mode", "budget", "cost", "cumulative_cost", "dataset_names", "meta_features")


def meta_train(
    source: str | os.PathLike[str] | MetaDataset,
    out_dir: str | os.PathLike[str],
    *,
    experiments: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    hold_out: Sequence[str] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> DeepKernelSurrogate:
    """Meta-train a :class:`DeepKernelSurrogate` on ``source`` and save it to ``out_dir``.

    ``source`` is a MetaDataset or a path :func:`load_meta_dataset` reads (``experiments`` for a store
    root); ``datasets`` keeps only those data sets, ``hold_out`` leaves those out (e.g. the task to tune
    later). ``options`` are :class:`SurrogateSettings` fields (``meta_train_steps=500``) or loader
    options (``metric``, ``mode``, ``budget``, ...).

    >>> meta_train("../shared/data/quicktune-mtlbm-extended", "surrogates/qt",
    ...            hold_out=["FLW"])  # doctest: +SKIP
    """
    setting_names = {f.name for f in fields(SurrogateSettings)}
    unknown = sorted(set(options) - setting_names - set(LOADER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown meta_train options {unknown}. Known: surrogate settings "
                         f"{sorted(setting_names)} and loader options {list(LOADER_OPTIONS)}.")
    settings = SurrogateSettings(**{k: v for k, v in options.items() if k in setting_names})
    loader = {k: v for k, v in options.items() if k in LOADER_OPTIONS}
    if isinstance(source, MetaDataset):
        if experiments is not None or loader:
            raise ValueError("`experiments` and loader options apply to a path, but `source` is already a "
                             "MetaDataset. Fix: leave them out.")
        data = source
        described = "MetaDataset"
    elif isinstance(source, (str, os.PathLike)):
        data = load_meta_dataset(source, experiments=experiments, **loader)
        described = os.fspath(source)
    else:
        raise TypeError(f"`source` must be a path or a MetaDataset, but got {type(source).__name__}.")
    if datasets is not None:
        data = data.select(list(datasets))
    if hold_out is not None:
        data = data.drop(list(hold_out))
    say = log or (lambda message: None)
    say(f"meta-training on {data.summary()}")
    surrogate = DeepKernelSurrogate(settings=settings, seed=seed).fit(data)
    surrogate.report.update({"source": described, "held_out": list(hold_out or []),
                             "trained_on": data.dataset_names})
    path = surrogate.save(out_dir)
    say(f"trained in {surrogate.report['seconds']:.1f} s on {surrogate.report['train_points']} points; "
        f"saved to {path}")
    return surrogate
