"""Growing a finished experiment: `--resume --num-samples N` adds trials with the searcher's and
the scheduler's state intact (Ray restores the number of samples it started with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import efficient_search as es
from efficient_search.cli import main as cli

pytestmark = pytest.mark.usefixtures("ray_session")

SPACE = {"depth": {"randint": [1, 3]}, "lr": {"loguniform": [0.01, 0.5]}, "width": 8, "batch_size": 64}


def spec(root: Path, name: str, searcher: str, num_samples: int, **fields: Any) -> dict[str, Any]:
    return {"name": name, "task_options": {"epochs": 2}, "search_space": SPACE, "searcher": searcher,
            "scheduler": "asha", "scheduler_options": {"max_t": 2, "grace_period": 1},
            "metric": "val_accuracy", "mode": "max", "num_samples": num_samples,
            "max_concurrent_trials": 1, "resources": {"num_workers": 0, "cpus_per_worker": 1},
            "store": str(root / "store"), "seed": 4, "verbose": 0, **fields}


def configs(root: Path, name: str) -> list[tuple[int, float]]:
    """The trials' configurations in the order they started."""
    rows = es.ParquetStore(str(root / "store")).results(name)
    first = rows.sort_values("timestamp").groupby("trial_id", sort=False).head(1)
    return [(int(d), round(float(lr), 12)) for d, lr in zip(first["config.depth"], first["config.lr"],
                                                             strict=True)]


@pytest.mark.parametrize("searcher", ["random", "evolution"])
def test_a_grown_experiment_suggests_what_one_run_of_that_size_would(
        tmp_path: Path, searcher: str, capsys: pytest.CaptureFixture[str]) -> None:
    options = {"searcher_options": {"population_size": 2}} if searcher == "evolution" else {}
    es.run(spec(tmp_path, "straight", searcher, 3, **options))
    es.run(spec(tmp_path, "grown", searcher, 2, **options))
    before = es.ParquetStore(str(tmp_path / "store")).results("grown")
    if searcher == "random":  # from the command line
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec(tmp_path, "grown", searcher, 2)))
        assert cli(["run", str(path), "--resume", "--num-samples", "3"]) == 0
        assert "'grown' grows from 2 to 3 samples" in capsys.readouterr().out
    else:  # from Python
        es.run(spec(tmp_path, "grown", searcher, 3, resume=True, **options))
    store = es.ParquetStore(str(tmp_path / "store"))
    rows = store.results("grown")
    assert configs(tmp_path, "grown") == configs(tmp_path, "straight")
    assert store.experiments().count("grown") == 1
    assert store.metadata("grown")["spec"]["num_samples"] == 3
    keys = list(zip(rows["trial_id"], rows["iteration"], rows["status"], strict=True))
    assert len(keys) == len(set(keys))  # nothing doubled
    assert set(before["trial_id"]) < set(rows["trial_id"]) and rows["trial_id"].nunique() == 3
    # Fewer samples than it ran is no shrink: the resume finds everything done.
    es.run(spec(tmp_path, "grown", searcher, 2, resume=True, **options))
    assert len(store.results("grown")) == len(rows)

