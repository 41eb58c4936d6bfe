"""One entry point for every meta-dataset source, told apart by what the path holds."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from efficient_search.surrogate.meta_dataset import INFO_FILE, MetaDataset
from efficient_search.surrogate.qttseg import is_qttseg_csv, load_qttseg_csv
from efficient_search.surrogate.quicktune import is_quicktune_folder, load_quicktune
from efficient_search.surrogate.store_data import load_store

STORE_PARTITION_PREFIX = "experiment="


def is_store_root(path: str) -> bool:
    """Whether ``path`` is a local folder with ``experiment=<name>`` partitions (a Parquet store)."""
    return os.path.isdir(path) and any(
        name.startswith(STORE_PARTITION_PREFIX) for name in os.listdir(path))


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"quicktune"``, ``"qttseg"``, ``"saved"`` (a :meth:`MetaDataset.save` folder) or ``"store"``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"meta-dataset path {path!r} does not exist.")
    if os.path.isdir(path):
        if is_quicktune_folder(path):
            return "quicktune"
        if os.path.isfile(os.path.join(path, INFO_FILE)):
            return "saved"
        if is_store_root(path):
            return "store"
        raise ValueError(f"folder {path!r} is neither a Quick-Tune meta-dataset (perf.json + table.csv), a "
                         f"saved MetaDataset ({INFO_FILE}) nor a Parquet store (experiment=<name> folders).")
    if is_qttseg_csv(path):
        return "qttseg"
    raise ValueError(f"file {path!r} is not a QTT-SEG-layout CSV (a .csv with epoch_<i>_<metric> columns). "
                     f"Fix: pass such a CSV, a Quick-Tune folder or a store root with experiments.")


def load_meta_dataset(
    path: str | os.PathLike[str],
    *,
    experiments: Sequence[str] | None = None,
    datasets: Iterable[str] | None = None,
    **options: Any,
) -> MetaDataset:
    """Load the meta-dataset at ``path``, whatever its format.

    - a folder with ``perf.json`` → Quick-Tune (:func:`load_quicktune`),
    - a ``.csv`` with ``epoch_<i>_<metric>`` columns → QTT-SEG (:func:`load_qttseg_csv`),
    - a folder written by :meth:`MetaDataset.save`,
    - a store root → its ``experiments`` (default: all) via :func:`load_store`.

    ``datasets`` keeps only those data sets; ``options`` go to the format's loader (e.g. ``metric``).

    >>> data = load_meta_dataset("../shared/data/quicktune-mtlbm-extended")  # doctest: +SKIP
    """
    path = os.fspath(path)
    kind = detect_format(path)
    if experiments is not None and kind != "store":
        raise ValueError(f"`experiments` only applies to a Parquet store, but {path!r} is a {kind} "
                         f"meta-dataset. Fix: leave it out.")
    if kind == "quicktune":
        data = load_quicktune(path, **options)
    elif kind == "qttseg":
        data = load_qttseg_csv(path, **options)
    elif kind == "saved":
        if options:
            raise ValueError(f"a saved MetaDataset takes no loader options, but got {sorted(options)}.")
        data = MetaDataset.load(path)
    else:
        if experiments is None:
            experiments = sorted(name[len(STORE_PARTITION_PREFIX):] for name in os.listdir(path)
                                 if name.startswith(STORE_PARTITION_PREFIX))
        data = load_store(path, experiments, **options)
    return data.select(list(datasets)) if datasets is not None else data
