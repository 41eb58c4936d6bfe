"""The command line: run a spec file, report it, and explain bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from efficient_search.cli import main

pytestmark = pytest.mark.usefixtures("ray_session")


def write_spec(folder: Path, **fields: object) -> Path:
    spec = {
        "name": "cli-digits",
        "task_options": {"epochs": 2},
        "search_space": {"depth": {"randint": [1, 3]}, "lr": {"choice": [0.05, 0.2]},
                         "width": 8},
        "scheduler": "asha",
        "scheduler_options": {"max_t": 2},
        "num_samples": 3,
        "resources": {"num_workers": 0},  # the loop runs inside the trial process
        "store": str(folder / "store"),
        **fields,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_run_then_report_prints_a_ranked_table_and_saves_plots(tmp_path, capsys) -> None:
    spec = write_spec(tmp_path)
    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "report: efficient-search report --store" in out

    store = str(tmp_path / "store")
    assert main(["report", "--store", store, "--experiment", "cli-digits",
                 "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["rank", "trial_id", "depth"]
    assert len([ln for ln in lines if ln.split()[:1] in (["1"], ["2"], ["3"])]) == 3
    for name in ("cli-digits-learning-curves.png", "cli-digits-best-so-far.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"saved {png}" in out


def test_cli_overrides_and_resume(tmp_path) -> None:
    spec = write_spec(tmp_path, num_samples=1)
    assert main(["run", str(spec), "--name", "cli-override", "--num-samples", "2"]) == 0
    from efficient_search.store import ParquetStore

    store = ParquetStore(tmp_path / "store")
    assert store.results("cli-override")["trial_id"].nunique() == 2
    # Resuming a finished experiment runs nothing again and writes no duplicate row.
    before = len(store.results("cli-override"))
    assert main(["run", str(spec), "--name", "cli-override", "--resume"]) == 0
    assert len(store.results("cli-override")) == before


def test_bad_input_exits_2_with_the_fix(tmp_path, capsys) -> None:
    spec = write_spec(tmp_path, searcher="bayes")
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Unknown `searcher` 'bayes'" in err
    assert "Valid searchers: evolution, optuna, quicktune, random" in err
    assert main(["report", "--store", str(tmp_path), "--experiment", "nope"]) == 2
    assert "'nope' is not in the store" in capsys.readouterr().err


def test_rerunning_an_experiment_needs_resume_and_other_metrics_need_a_mode(tmp_path,
                                                                            capsys) -> None:
    spec = write_spec(tmp_path, num_samples=1, search_space={"depth": 1, "width": 8})
    assert main(["run", str(spec)]) == 0
    capsys.readouterr()
    assert main(["run", str(spec)]) == 2
    assert "already has results" in capsys.readouterr().err
    store = str(tmp_path / "store")
    assert main(["report", "--store", store, "--experiment", "cli-digits",
                 "--metric", "val_loss"]) == 2
    assert "`mode` is needed to rank" in capsys.readouterr().err
    assert main(["report", "--store", store, "--experiment", "cli-digits", "--metric", "val_loss",
                 "--mode", "min", "--out", str(tmp_path / "plots")]) == 0


def test_a_raising_trial_is_recorded_as_errored_next_to_the_others(tmp_path) -> None:
    from ray.tune.schedulers import FIFOScheduler

    import efficient_search as es

    result = es.run(
        write_spec(tmp_path),
        name="with-error",
        search_space={"depth": {"grid": [1, -1]}, "width": 8},
        scheduler=FIFOScheduler(),  # a Ray object instead of a name
        num_samples=1,
    )
    trials = result.trials().set_index("config.depth")
    assert trials.loc[1, "status"] == "TERMINATED" and trials.loc[1, "results"] == 2
    assert trials.loc[-1, "status"] == "ERROR" and trials.loc[-1, "results"] == 0
    assert "`depth` must be an integer >= 0, but got -1" in trials.loc[-1, "error"]
    assert set(result.results()["scheduler"]) == {"FIFOScheduler"}
