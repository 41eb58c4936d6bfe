"""An append-only Parquet dataset of trial results, hive-partitioned by experiment.

Layout under the store root::

    experiment=<name>/part-<time_ns>-<uid>.parquet   one file per flush, written whole
    experiment=<name>/_experiment.json               the run's spec (ignored by Parquet readers)

Trial ends flush small files; once an experiment holds more than ``max_small_files`` files
under ``small_file_rows`` rows, they are merged into one, so readers open few files.

Every file of one experiment has the same schema, so ``pandas.read_parquet``,
``pyarrow.dataset.dataset(root, partitioning="hive")``, polars and DuckDB read an experiment
folder without a schema argument. When a flush brings new columns (a new metric), the
experiment's files are rewritten once into a single file with the grown schema.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from efficient_search.durable import atomic_write
from efficient_search.redaction import redact
from efficient_search.store import owner as ownership
from efficient_search.store.paths import inside_root
from efficient_search.store.rows import ERROR, IDENTITY_COLUMNS, TERMINATED, row_key

logger = logging.getLogger(__name__)

PARTITION_KEY = "experiment"
METADATA_FILE = "_experiment.json"
#: Reads retried when a concurrent writer replaced a file between listing and reading.
READ_ATTEMPTS = 20  # with the backoff below, up to ~8 s of a busy writer's merges


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type holding values of both: null < int < float < string."""
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    if _is_numeric(a) and _is_numeric(b):
        return pa.float64()
    return pa.string()


def merge_schemas(base: pa.Schema, new: pa.Schema) -> pa.Schema:
    """``base`` with ``new``'s extra columns appended and conflicting types widened."""
    fields = []
    for field in base:
        index = new.get_field_index(field.name)
        kind = field.type if index < 0 else merge_types(field.type, new.field(index).type)
        fields.append(pa.field(field.name, kind))
    fields += [f for f in new if base.get_field_index(f.name) < 0]
    return pa.schema(fields)


def _column(values: list[Any], hint: pa.DataType | None) -> pa.Array:
    for kind in (hint, None):
        try:
            return pa.array(values, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            continue
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Build a table from row dicts; columns known to ``schema`` keep its types where possible."""
    names = list(IDENTITY_COLUMNS)
    seen = set(names)
    for row in rows:
        for name in row:
            if name not in seen:
                seen.add(name)
                names.append(name)
    arrays, fields = [], []
    for name in names:
        hint = None
        if schema is not None and schema.get_field_index(name) >= 0:
            hint = schema.field(name).type
        array = _column([row.get(name) for row in rows], hint)
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder, cast and null-fill ``table`` to exactly ``schema``."""
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def validate_experiment_name(name: object, field: str = "name") -> str:
    """Experiment names become folder names: letters, digits, ``_``, ``-`` and single dots."""
    if not isinstance(name, str):
        raise TypeError(f"`{field}` must be a string, but got {name!r} ({type(name).__name__}).")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
    if (
        not name
        or ".." in name
        or name.startswith((".", "_", "-"))
        or not set(name) <= allowed
        or len(name) > 200
    ):
        raise ValueError(
            f"`{field}` must be a plain experiment name (letters, digits, '_', '-', '.', no "
            f"path separators or '..', not starting with '.', '_' or '-'), but got {name!r}. "
            "Fix: use a name such as 'digits-asha-1'."
        )
    return name


class ParquetStore:
    """Reader and writer of the results dataset under ``root`` (a local path or a URI).

    Example::

        store = ParquetStore("results")
        store.results(experiment="digits-demo")          # every reported row
        store.trials(experiment="digits-demo", metric="val_accuracy", mode="max")
        store.best(experiment="digits-demo", metric="val_accuracy", mode="max")
    """

    def __init__(self, root: str | os.PathLike[str], *, filesystem: pafs.FileSystem | None = None,
                 max_small_files: int = 16, small_file_rows: int = 50_000):
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"`store` must be a path or URI string, but got {root!r}.")
        root = os.fspath(root)
        self.max_small_files = max_small_files
        self.small_file_rows = small_file_rows
        if not isinstance(root, str) or not root:
            raise ValueError(f"`store` must be a non-empty path or URI, but got {root!r}.")
        self.root = root
        if filesystem is not None:
            self._fs, self._path = filesystem, root
        elif "://" in root:
            self._fs, self._path = pafs.FileSystem.from_uri(root)
        else:
            self._fs, self._path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(root))
        self._schemas: dict[str, pa.Schema] = {}
        self._row_counts: dict[str, int] = {}  # data file -> rows, so merges read few footers

    def __repr__(self) -> str:
        return f"ParquetStore({self.root!r})"

    # -- paths ---------------------------------------------------------------------------
    def _partition(self, experiment: str) -> str:
        name = validate_experiment_name(experiment, "experiment")
        return inside_root(self._path, f"{PARTITION_KEY}={name}", field="experiment",
                           local=isinstance(self._fs, pafs.LocalFileSystem))

    def _list(self, folder: str) -> list[pafs.FileInfo]:
        """The entries of ``folder``; none when it does not exist."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return list(self._fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)))
            except FileNotFoundError:
                # pyarrow checks whether a folder it failed to list exists: one that another
                # driver created (or an empty one it removed) in between reads as an error.
                time.sleep(0.01 * (attempt + 1))
        return []

    def _data_files(self, experiment: str) -> list[str]:
        infos = self._list(self._partition(experiment))
        return sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.base_name.endswith(".parquet")
            and not i.base_name.startswith((".", "_"))
        )

    def _write_whole(self, path: str, write: Any) -> None:
        """Write ``path`` whole through :func:`~efficient_search.durable.atomic_write` (a hidden
        temp file next to it, fsynced and renamed into place), so readers never see part of it."""
        atomic_write(path, write, filesystem=self._fs)

    # -- writing -------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Raise ``ValueError`` naming the store root when it cannot be written."""
        probe = f"{self._path}/.probe-{uuid.uuid4().hex}"
        try:
            self._fs.create_dir(self._path, recursive=True)
            with self._fs.open_output_stream(probe) as stream:
                stream.write(b"ok")
            self._fs.delete_file(probe)
        except (OSError, pa.ArrowException) as exc:
            raise ValueError(
                f"`store` root {self.root!r} is not writable ({type(exc).__name__}: {exc}). "
                "Fix: pass a directory you can write to, e.g. store: ./results, or a bucket URI."
            ) from exc

    def _schema(self, experiment: str) -> pa.Schema | None:
        if experiment not in self._schemas:
            files = self._data_files(experiment)
            if not files:
                return None
            self._schemas[experiment] = pq.read_schema(files[0], filesystem=self._fs)
        return self._schemas[experiment]

    def append(self, experiment: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write ``rows`` as one new file of ``experiment``; returns the number of rows."""
        if not rows:
            return 0
        base = self._schema(experiment)
        table = rows_to_table(rows, base)
        if base is None:
            self._write_file(experiment, table)
        elif merge_schemas(base, table.schema) == base:
            self._write_file(experiment, conform(table, base))
            try:  # the rows are safe on disk already: a failed merge must not re-send them
                self._merge_small_files(experiment)
            except (OSError, pa.ArrowException) as exc:
                logger.warning("Merging small files of %r failed (%s); will retry later.",
                               experiment, exc)
        else:
            self._compact(experiment, table)
        return table.num_rows

    def _merge_small_files(self, experiment: str) -> None:
        files = self._data_files(experiment)
        if len(files) <= self.max_small_files:
            return
        for path in files:
            if path not in self._row_counts:
                self._row_counts[path] = pq.ParquetFile(path, filesystem=self._fs).metadata.num_rows
        small = [f for f in files if self._row_counts[f] < self.small_file_rows]
        if len(small) > self.max_small_files:
            merged = ds.dataset(small, format="parquet", filesystem=self._fs).to_table()
            self._write_file(experiment, merged)
            for path in small:
                self._fs.delete_file(path)
                self._row_counts.pop(path, None)

    def _write_file(self, experiment: str, table: pa.Table) -> str:
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        path = f"{self._partition(experiment)}/{name}"
        self._write_whole(path, lambda stream: pq.write_table(table, stream))
        self._schemas[experiment] = table.schema
        self._row_counts[path] = table.num_rows
        return path

    def _compact(self, experiment: str, table: pa.Table) -> None:
        """Rewrite the experiment as one file whose schema holds ``table``'s new columns."""
        old_files = self._data_files(experiment)
        old = ds.dataset(old_files, format="parquet", filesystem=self._fs).to_table()
        schema = merge_schemas(old.schema, table.schema)
        merged = pa.concat_tables([conform(old, schema), conform(table, schema)])
        self._write_file(experiment, merged)
        for path in old_files:
            self._fs.delete_file(path)

    def remove(self, experiment: str, keys: set[tuple[str, int, str]]) -> int:
        """Rewrite ``experiment`` without the rows whose (trial_id, iteration, status) key is in
        ``keys``; returns how many rows went.

        The kept rows are written as one new file before the old files are deleted, so a crash in
        between leaves duplicates (dropped by every read), never a loss.
        """
        if not keys:
            return 0
        old_files = self._data_files(experiment)
        if not old_files:
            return 0
        table = self._read(experiment)
        drop = [row_key(r) in keys for r in table.select(["trial_id", "iteration", "status"]).to_pylist()]
        if not any(drop):
            return 0
        kept = table.filter(pa.array([not d for d in drop]))
        if kept.num_rows:
            self._write_file(experiment, kept)
        for path in old_files:
            self._fs.delete_file(path)
            self._row_counts.pop(path, None)
        return table.num_rows - kept.num_rows

    def write_metadata(self, experiment: str, metadata: Mapping[str, Any]) -> None:
        """Save experiment-level facts (spec, metric, mode) beside the data files.

        Values that look secret are replaced (see :func:`efficient_search.redaction.redact`).
        """
        plain = json.loads(json.dumps(dict(metadata), default=str))  # objects as their text, redacted too
        # Key order is kept: a resumed search space must list its axes in the order it ran with.
        text = json.dumps(redact(plain), indent=2).encode()
        path = f"{self._partition(experiment)}/{METADATA_FILE}"
        self._write_whole(path, lambda stream: stream.write(text))

    # -- ownership -----------------------------------------------------------------------
    def _claim_key(self, experiment: str) -> str:
        folder = self._partition(experiment)
        return os.path.realpath(folder) if isinstance(self._fs, pafs.LocalFileSystem) else folder

    def claim(self, experiment: str, *, heartbeat_s: float = ownership.HEARTBEAT_S,
              stale_after_s: float = ownership.STALE_AFTER_S) -> ownership.ExperimentClaim:
        """Make this process the one driver writing ``experiment`` (a no-op if it already is);
        :class:`~efficient_search.store.owner.ExperimentInUseError` (a ``ValueError``) while
        another live driver holds it. See :mod:`efficient_search.store.owner`."""
        return ownership.claim(self._fs, self._claim_key(experiment), experiment=experiment,
                           store_root=self.root, heartbeat_s=heartbeat_s, stale_after_s=stale_after_s)

    def release(self, experiment: str) -> None:
        """Give up this process's claim on ``experiment`` (nothing if it holds none)."""
        ownership.release(self._claim_key(experiment))

    def owner(self, experiment: str) -> ownership.Owner | None:
        """The driver recorded as writing ``experiment`` (live or not); None when unclaimed."""
        return ownership.read_owner(self._fs, self._partition(experiment))

    # -- reading -------------------------------------------------------------------------
    def metadata(self, experiment: str) -> dict[str, Any]:
        path = f"{self._partition(experiment)}/{METADATA_FILE}"
        try:
            with self._fs.open_input_stream(path) as stream:
                return dict(json.loads(stream.read().decode()))
        except FileNotFoundError:
            return {}

    def experiments(self) -> list[str]:
        """Names of the experiments in the store."""
        infos = self._list(self._path)
        prefix = f"{PARTITION_KEY}="
        return sorted(
            i.base_name[len(prefix) :]
            for i in infos
            if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix)
        )

    def _require(self, experiment: str) -> None:
        if experiment not in self.experiments():
            known = ", ".join(self.experiments()) or "none yet"
            raise ValueError(
                f"`experiment` {experiment!r} is not in the store {self.root!r} "
                f"(experiments there: {known})."
            )

    def _read(self, experiment: str, columns: list[str] | None = None) -> pa.Table:
        # A writer merging or rewriting files writes the replacement, then deletes the files it
        # replaced. A file listed may be gone when read (its rows are in the replacement), and a
        # folder listing taken meanwhile may hold neither (a listing is no snapshot), so a read
        # counts once the listing after it is the listing before it.
        for attempt in range(READ_ATTEMPTS - 1):
            files = self._data_files(experiment)
            try:
                table = self._read_files(files, columns)
            except FileNotFoundError:
                pass
            else:
                if self._data_files(experiment) == files:
                    return table
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        return self._read_files(self._data_files(experiment), columns)

    def _read_files(self, files: list[str], columns: list[str] | None) -> pa.Table:
        if not files:
            return pa.table({})
        # Files of one experiment share a schema, except after a crash between writing a merged
        # file and deleting the ones it replaced: unify so no column is dropped.
        schemas = [pq.read_schema(f, filesystem=self._fs) for f in files]
        schema = schemas[0]
        for other in schemas[1:]:
            schema = merge_schemas(schema, other)
        dataset = ds.dataset(files, format="parquet", filesystem=self._fs, schema=schema)
        if columns is not None:
            columns = [c for c in columns if c in dataset.schema.names]
        return dataset.to_table(columns=columns)

    def keys(self, experiment: str) -> set[tuple[str, int, str]]:
        """The (trial_id, iteration, status) keys already written for ``experiment``."""
        table = self._read(experiment, ["trial_id", "iteration", "status"])
        if table.num_rows == 0:
            return set()
        return {row_key(r) for r in table.to_pylist()}

    def results(self, experiment: str | None = None) -> pd.DataFrame:
        """Every row (one per reported result, plus one end row per trial), oldest first."""
        names = [experiment] if experiment is not None else self.experiments()
        if experiment is not None:
            self._require(experiment)
        frames = []
        for name in names:
            table = self._read(name)
            if table.num_rows == 0:  # an experiment whose first flush has not landed yet
                continue
            frame = table.to_pandas()
            frame.insert(0, PARTITION_KEY, name)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=[PARTITION_KEY, *IDENTITY_COLUMNS])
        frame = pd.concat(frames, ignore_index=True)
        # A crash between writing a merged file and deleting its sources leaves duplicates.
        frame = frame.drop_duplicates([PARTITION_KEY, "trial_id", "iteration", "status"],
                                      keep="last")
        order = ["timestamp", "trial_id", "iteration"]
        return frame.sort_values(order, kind="stable", na_position="last", ignore_index=True)

    def trials(
        self, experiment: str, metric: str | None = None, mode: str | None = None
    ) -> pd.DataFrame:
        """One row per trial: its config, final status, results count and best ``metric``.

        ``metric`` is a reported name (``val_accuracy``) or a column (``metric.val_accuracy``);
        both default to what the experiment's run recorded. Sorted best first.
        """
        frame = self.results(experiment)
        metric, mode = self._objective(experiment, metric, mode, frame)
        reported = frame[~frame["status"].isin([TERMINATED, ERROR])]
        ends = frame.drop_duplicates("trial_id", keep="last").set_index("trial_id")
        config_cols = [c for c in frame.columns if c.startswith("config.")]
        summary = ends[config_cols].copy()
        summary["status"] = ends["status"]
        summary["error"] = ends["error"]
        summary["results"] = reported.groupby("trial_id").size().reindex(summary.index).fillna(0)
        summary["results"] = summary["results"].astype(int)
        summary["last_iteration"] = ends["iteration"]
        grouped = frame.groupby("trial_id")[metric]
        summary[metric] = grouped.max() if mode == "max" else grouped.min()
        summary["time_total_s"] = frame.groupby("trial_id")["time_total_s"].max()
        summary = summary.sort_values(metric, ascending=(mode == "min"), na_position="last")
        return summary.reset_index()

    def best(
        self, experiment: str, metric: str | None = None, mode: str | None = None, n: int = 1
    ) -> pd.DataFrame:
        """The ``n`` best trials of ``experiment`` (see :meth:`trials`)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"`n` must be a positive integer, but got {n!r}.")
        return self.trials(experiment, metric, mode).head(n)

    def _objective(
        self, experiment: str, metric: str | None, mode: str | None, frame: pd.DataFrame
    ) -> tuple[str, str]:
        meta = self.metadata(experiment)
        if metric is not None and mode is None and metric.removeprefix("metric.") != meta.get(
                "metric"):
            raise ValueError(
                f"`mode` is needed to rank experiment {experiment!r} by {metric!r}, which is not "
                f"the metric it ran with ({meta.get('metric')!r}). Fix: pass mode='min' or 'max'."
            )
        metric = metric or meta.get("metric")
        mode = mode or meta.get("mode")
        if metric is None or mode is None:
            raise ValueError(
                f"`metric` and `mode` are needed to rank experiment {experiment!r}, and its "
                "metadata has none. Fix: pass metric='val_accuracy', mode='max' (for example)."
            )
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', but got {mode!r}.")
        column = metric if metric.startswith(("metric.", "fidelity.", "cost.")) else f"metric.{metric}"
        if column not in frame.columns:
            known = sorted(c for c in frame.columns if c.startswith(("metric.", "cost.", "fidelity.")))
            raise ValueError(
                f"`metric` {metric!r} was never reported in experiment {experiment!r}. "
                f"Reported columns: {', '.join(known) or 'none'}."
            )
        return column, mode

