"""Bad input: each case fails with a clear error before any trial starts."""

from __future__ import annotations

import json

import pytest
from ray import tune

import efficient_search as es
from efficient_search.spec import ExperimentSpec, Resources


def good(**fields: object) -> dict:
    return {"name": "ok", "num_samples": 1, "resources": {"num_workers": 0}, **fields}


def test_yaml_and_json_files_load_into_the_same_spec(tmp_path) -> None:
    data = good(task_options={"epochs": 2}, scheduler="asha", seed=7)
    (tmp_path / "s.json").write_text(json.dumps(data))
    (tmp_path / "s.yaml").write_text(
        "name: ok\nnum_samples: 1\nresources: {num_workers: 0}\n"
        "task_options: {epochs: 2}\nscheduler: asha\nseed: 7\n"
    )
    from_json = ExperimentSpec.from_file(tmp_path / "s.json")
    assert from_json == ExperimentSpec.from_file(tmp_path / "s.yaml")
    assert from_json.resources == Resources(num_workers=0)
    assert from_json.to_dict()["resources"]["num_workers"] == 0


@pytest.mark.parametrize(
    ("fields", "error", "pattern"),
    [
        ({"num_sample": 4}, ValueError, r"`num_sample` \(value 4\)\. Did you mean `num_samples`"),
        ({"resources": {"num_worker": 2}}, ValueError, r"Did you mean `resources.num_workers`"),
        ({"num_samples": "4"}, TypeError, r"`num_samples` must be an integer, but got '4'"),
        ({"num_samples": 0}, ValueError, r"`num_samples` must be a finite number >= 1, but got 0"),
        ({"seed": 1.5}, TypeError, r"`seed` must be an integer"),
        ({"mode": "maximize"}, ValueError, r"`mode` must be 'min' or 'max', but got 'maximize'"),
        ({"resources": {"strategy": "fsdp"}}, ValueError, r"`resources.strategy` must be one of"),
        ({"resources": {"cpus_per_worker": "one"}}, TypeError, r"`resources.cpus_per_worker`"),
        ({"task_options": [1]}, TypeError, r"`task_options` must be a mapping"),
        ({"name": "a/b"}, ValueError, r"`name` must be a plain experiment name"),
        ({"name": "../x"}, ValueError, r"no path separators or '\.\.'"),
        ({"time_budget_s": -1}, ValueError, r"`time_budget_s` must be a finite number >= 0"),
        ({"resources": {"strategy": "deepspeed", "deepspeed_config": {"fp16": {"enabled": True}}}},
         ValueError, r"DeepSpeed on CPU has no fp16\. Fix: use bf16"),
        ({"resources": {"strategy": "deepspeed",
                        "deepspeed_config": {"zero_optimization": {"stage": 2, "bogus": 1}}}},
         ValueError, r"DeepSpeed rejects `resources.deepspeed_config`.*bogus"),
        ({"resources": {"strategy": "deepspeed", "deepspeed_config": {"zero_optimisation": {"stage": 2}}}},
         ValueError, r"`resources.deepspeed_config.zero_optimisation`.*Did you mean 'zero_optimization'"),
        ({"time_budget_s": float("nan")}, ValueError, r"must be a finite number >= 0"),
        ({"store": 3}, TypeError, r"`store` must be a non-empty string.*store: \./results"),
        ({"resources": {"strategy": "deepspeed", "num_workers": 0}}, ValueError,
         r"'deepspeed' needs Ray Train workers"),
        ({"metric": ["val_loss", 3]}, TypeError, r"`metric` must be a string or a list of strings"),
        ({"metric": ["val_loss", "val_loss"]}, ValueError, r"lists an objective twice"),
        ({"metric": ["val_loss", "val_accuracy"], "mode": ["min"]}, ValueError,
         r"`mode` \['min'\] needs one entry per metric"),
        ({"metric": "val_loss", "mode": ["min", "max"]}, ValueError, r"`mode` is a list"),
        ({"mode": "maximise"}, ValueError, r"`mode` must be 'min' or 'max'"),
        ({"reuse_actors": "yes"}, TypeError, r"`reuse_actors` must be true or false, but got 'yes'"),
    ],
)
def test_bad_spec_fields_name_the_field_the_value_and_the_fix(fields, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        ExperimentSpec.from_dict(good(**fields))


@pytest.mark.parametrize(
    ("fields", "error", "pattern"),
    [
        ({"task": "digitz"}, ValueError, r"Unknown `task` 'digitz'\. Did you mean 'digits'"),
        ({"searcher": "randm"}, ValueError, r"Unknown `searcher` 'randm'\. Did you mean 'random'\? "
                                            r"Valid searchers: .*random"),
        ({"scheduler": "ashaa"}, ValueError,
         r"Valid schedulers: asha, fifo, freeze_thaw, hyperband, layer_freezing, median"),
        ({"scheduler": "asha", "scheduler_options": {"max_tt": 3}}, ValueError,
         r"Unknown `scheduler_options.max_tt` for scheduler 'asha'"),
        ({"scheduler": "layer_freezing"}, ValueError,
         r"scheduler 'layer_freezing' needs `scheduler_options.max_trainable_layers`"),
        ({"metric": "accuracy"}, ValueError,
         r"`metric` 'accuracy' is never reported by task 'digits'\. Fix: use one of val_accuracy"),
        ({"task_options": {"epoch": 2}}, ValueError,
         r"Unknown `task_options.epoch`.*Did you mean 'epochs'"),
        ({"task_options": {"epochs": "2"}}, TypeError, r"`task_options.epochs` must be int"),
        ({"search_space": {"lr": {"loguniform": [0.1, 0.01]}}}, ValueError,
         r"`search_space.lr`: `low < high` must hold for loguniform, but got \(low=0.1, high=0.01\)"),
        ({"search_space": {"lr": {"loguniorm": [0.1, 1]}}}, ValueError,
         r"unknown domain 'loguniorm'\. Did you mean 'loguniform'"),
        ({"search_space": "nope"}, ValueError, r"Unknown `search_space` 'nope'"),
        ({"searcher": 3}, TypeError, r"`searcher` must be a registered name or a Ray object"),
        ({"metric": ["val_accuracy", "val_loss"]}, ValueError,
         r"names several objectives, but searcher 'random' optimises one"),
        ({"metric": ["val_accuracy", "acc"]}, ValueError, r"`metric` 'acc' is never reported"),
        ({"resources": {"strategy": "deepspeed",
                        "deepspeed_config": {"zero_optimization": {"stage": 3}}}},
         ValueError, r"stage` 3 is not supported by task 'digits'"),
    ],
)
def test_run_rejects_bad_input_before_any_trial(tmp_path, fields, error, pattern) -> None:
    store = tmp_path / "store"
    with pytest.raises(error, match=pattern):
        es.run(good(store=str(store), **fields))
    assert not store.exists(), "validation must happen before anything is written"


def test_run_rejects_an_unwritable_store(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"`store` root .* is not writable.*Fix"):
        es.run(good(store=str(blocker / "store")))


def test_missing_spec_file_and_wrong_suffix(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        es.run(str(tmp_path / "missing.yaml"))
    (tmp_path / "spec.toml").write_text("name = 'x'")
    with pytest.raises(ValueError, match=r"must end in \.yaml, \.yml or \.json"):
        es.run(str(tmp_path / "spec.toml"))


def test_ray_objects_are_accepted_from_python() -> None:
    from efficient_search.registry import make_scheduler, make_searcher

    searcher = tune.search.BasicVariantGenerator(random_state=1)
    scheduler = tune.schedulers.AsyncHyperBandScheduler(max_t=3)
    assert make_searcher(searcher, seed=0, options={}) is searcher
    assert make_scheduler(scheduler, seed=0, options={}) is scheduler
    spec = ExperimentSpec(name="obj", searcher=searcher, scheduler=scheduler)
    assert spec.to_dict()["searcher"] == "<BasicVariantGenerator>"


def test_shipped_example_specs_are_valid(tmp_path) -> None:
    from pathlib import Path

    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    assert examples
    from efficient_search.api import objective
    from efficient_search.registry import SEARCHERS, takes_objectives
    from efficient_search.tasks import get_task

    names = {ExperimentSpec.from_file(path).name: path for path in examples}
    for path in examples:
        spec = ExperimentSpec.from_file(path)
        task = get_task(spec.task)
        searched = spec.task_options.get("searched")
        if searched:
            # Step 2 of a two-spec workflow reads step 1's experiment, which a fresh clone's store
            # lacks: the chain must name a shipped spec of the same store, and only its absence fails.
            assert searched["experiment"] in names, (path, searched)
            assert ExperimentSpec.from_file(names[searched["experiment"]]).store == searched["store"]
            empty = {**spec.task_options, "searched": {**searched, "store": str(tmp_path)}}
            with pytest.raises(ValueError, match="is not in the store"):
                task.resolve_options(empty)
            task.resolve_options({**spec.task_options, "searched": None, "init": "random"})
        else:
            task.resolve_options(spec.task_options)
        metric, _ = objective(spec, task)
        assert spec.searcher in SEARCHERS
        assert not isinstance(metric, list) or takes_objectives(spec.searcher)
    # The demo trains on Ray Train workers.
    assert ExperimentSpec.from_file(examples[0].with_name("digits.yaml")).resources.num_workers == 2


def test_resuming_under_another_search_space_is_refused(tmp_path) -> None:
    from ray import tune

    from efficient_search.api import check_same_space, describe_space
    from efficient_search.store import ParquetStore

    store = ParquetStore(str(tmp_path / "store"))
    space = {"lr": tune.loguniform(1e-3, 1e-1), "depth": tune.randint(1, 5), "batch_size": 32}
    store.write_metadata("exp", {"space": describe_space(space)})
    check_same_space(store, "exp", describe_space(dict(space)))  # the same axes: fine
    changed = {**space, "depth": tune.randint(1, 9)}
    with pytest.raises(ValueError, match=r"ran with another search space.*Fix: resume with the spec"):
        check_same_space(store, "exp", describe_space(changed))
    assert describe_space({"x": tune.grid_search([1, 2])}) is None  # grids have no axes to compare
    check_same_space(store, "new", describe_space(changed))  # nothing recorded yet


@pytest.mark.usefixtures("ray_session")
def test_reused_trial_processes_give_the_same_results(tmp_path) -> None:
    """``reuse_actors`` runs later trials in the processes of finished ones (what they cache stays
    loaded) and changes no result."""
    import efficient_search as es

    pids, scores = {}, {}
    for reuse in (False, True):
        result = es.run({"name": f"reuse-{reuse}", "task": "digits", "task_options": {"epochs": 1},
                         "search_space": {"lr": {"grid": [0.05, 0.1]}, "depth": 1, "width": 8,
                                          "batch_size": 64},
                         "num_samples": 1, "reuse_actors": reuse, "max_concurrent_trials": 1,
                         "resources": {"num_workers": 0, "cpus_per_worker": 1},
                         "store": str(tmp_path / "store"), "verbose": 0})
        assert len(result.grid) == 2 and not result.grid.errors
        pids[reuse] = {r.metrics["pid"] for r in result.grid}
        scores[reuse] = sorted(r.metrics[result.metric.removeprefix("metric.")] for r in result.grid)
    assert len(pids[True]) == 1 and len(pids[False]) == 2
    assert scores[True] == pytest.approx(scores[False])
