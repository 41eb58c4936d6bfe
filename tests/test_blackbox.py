"""YAHPO Gym surrogates as a blackbox: the shipped lcbench reference evaluations reproduced exactly,
the space and metadata read from the scenario, a second (synthetic) scenario through the same
generic path, the ConfigSpace conversion, and the compatibility stand-ins."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("yahpo_gym", reason="yahpo-gym is not installed (pip install onnxruntime "
                    "'ConfigSpace>=1' && pip install --no-deps yahpo-gym==1.0.2)")

import ConfigSpace as CS  # noqa: E402
from ray.tune.search.sample import Categorical, Float, Integer, LogUniform  # noqa: E402

from efficient_search.blackbox import _yahpo_compat as compat  # noqa: E402
from efficient_search.blackbox.config_space import active_values, ray_space  # noqa: E402
from efficient_search.blackbox.yahpo import DATA_ENV, SHARED_DATA, YahpoBenchmark  # noqa: E402
from efficient_search.searchers.space import SearchSpace  # noqa: E402

DATA = Path(os.environ.get(DATA_ENV) or SHARED_DATA)
LCBENCH = DATA / "lcbench"
needs_lcbench = pytest.mark.skipif(
    not LCBENCH.is_dir(), reason=f"YAHPO lcbench data not found at {LCBENCH} (by default the shared "
    f"data folder beside the repository; ${DATA_ENV} names another)")
FLOAT32_EPS = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def lcbench() -> YahpoBenchmark:
    return YahpoBenchmark("lcbench", data_path=DATA)


def lcbench_config(**changes: object) -> dict[str, object]:
    config = {"batch_size": 64, "learning_rate": 1e-3, "max_dropout": 0.2, "max_units": 256,
              "momentum": 0.9, "num_layers": 3, "weight_decay": 1e-4}
    return {**config, **changes}


@needs_lcbench
def test_lcbench_reproduces_every_reference_evaluation(lcbench: YahpoBenchmark) -> None:
    reference = json.loads((LCBENCH / "reference_evaluations.json").read_text())
    assert reference["fidelity_params"] == [lcbench.fidelity.name]
    assert reference["instance_param"] == lcbench.instance_param
    assert len(reference["evaluations"]) == 60
    for case in reference["evaluations"]:
        config = dict(case["config"])
        instance, epoch = config.pop(reference["instance_param"]), config.pop("epoch")
        assert instance == case["instance"]
        out = lcbench.evaluate(config, instance, epoch)
        for name, expected in case["result"].items():
            assert math.isclose(out[name], expected, rel_tol=FLOAT32_EPS, abs_tol=1e-30), (case, name)
        assert out["cost/seconds"] == max(out["time"], 0.0)
        assert out["fidelity/epoch"] == epoch


@needs_lcbench
def test_lcbench_space_is_the_seven_real_hyperparameters(lcbench: YahpoBenchmark) -> None:
    recorded = {hp["name"]: hp for hp in json.loads((LCBENCH / "config_space.json").read_text())[
        "hyperparameters"]}
    space = lcbench.space()
    assert sorted(space) == sorted(set(recorded) - {"OpenML_task_id", "epoch"})
    assert len(space) == 7
    for name, domain in space.items():
        hp = recorded[name]
        log = isinstance(domain.get_sampler(), LogUniform)
        assert log == hp["log"], name
        if hp["type"] == "uniform_int":
            assert isinstance(domain, Integer)
            assert (domain.lower, domain.upper) == (hp["lower"], hp["upper"] + 1)  # Ray: upper exclusive
        else:
            assert isinstance(domain, Float)  # ConfigSpace 1.x rounds 0.00010000000000000009 to 1e-4
            assert domain.lower == pytest.approx(hp["lower"], rel=1e-12)
            assert domain.upper == pytest.approx(hp["upper"], rel=1e-12)
    assert {n for n, d in space.items() if isinstance(d.get_sampler(), LogUniform)} == {
        "batch_size", "learning_rate", "max_units"}


@needs_lcbench
def test_lcbench_instances_fidelity_and_metrics(lcbench: YahpoBenchmark) -> None:
    recorded = json.loads((LCBENCH / "config_space.json").read_text())["hyperparameters"]
    assert lcbench.instances == next(h["choices"] for h in recorded if h["name"] == "OpenML_task_id")
    assert len(lcbench.instances) == 34
    fidelity = lcbench.fidelity
    assert (fidelity.name, fidelity.min, fidelity.max, fidelity.continuable, fidelity.integer) == (
        "epoch", 1, 52, True, True)
    assert lcbench.held == {}
    assert lcbench.metric_names == ["time", "val_accuracy", "val_cross_entropy", "val_balanced_accuracy",
                                    "test_cross_entropy", "test_balanced_accuracy"]
    assert (lcbench.metric, lcbench.mode) == ("val_accuracy", "max")
    assert lcbench.modes["val_cross_entropy"] == "min"
    assert lcbench.citation


@needs_lcbench
def test_lcbench_sampled_configs_evaluate(lcbench: YahpoBenchmark) -> None:
    rng = np.random.default_rng(0)
    parsed = SearchSpace.from_ray(lcbench.space())  # what our searchers sample from
    for i in range(20):
        config = {n: d.sample(random_state=rng) for n, d in lcbench.space().items()}
        out = lcbench.evaluate(config, lcbench.instances[i], int(rng.integers(1, 53)))
        assert all(math.isfinite(v) for v in out.values())
        assert math.isfinite(lcbench.evaluate(parsed.decode(parsed.sample(rng)), "3945", 52)["time"])
    # A log-uniform sample that rounding put just past a bound is clipped, not refused.
    edge = lcbench_config(learning_rate=lcbench.space()["learning_rate"].upper * (1 + 1e-12))
    assert lcbench.evaluate(edge, "3945", 1) == lcbench.evaluate(
        lcbench_config(learning_rate=lcbench.space()["learning_rate"].upper), "3945", 1)
    # Pickled as its arguments (the ONNX session is reopened), as Ray does with trainables' closures.
    copy = pickle.loads(pickle.dumps(lcbench))
    assert copy.evaluate(lcbench_config(), "3945", 5) == lcbench.evaluate(lcbench_config(), "3945", 5)
    # Instances may be given as numbers too.
    assert lcbench.evaluate(lcbench_config(), 3945, 5) == lcbench.evaluate(  # type: ignore[arg-type]
        lcbench_config(), "3945", 5)


@needs_lcbench
@pytest.mark.parametrize(("config", "instance", "fidelity", "error", "words"), [
    (lcbench_config(), "123", 5, ValueError, ["`instance` '123'", "Fix: pass one of"]),
    (lcbench_config(), "3945", 0, ValueError, ["`fidelity` (epoch) must be in [1, 52]", "0"]),
    (lcbench_config(), "3945", 53, ValueError, ["`fidelity` (epoch) must be in [1, 52]", "53"]),
    (lcbench_config(), "3945", 2.5, ValueError, ["whole number", "2.5"]),
    (lcbench_config(), "3945", "5", TypeError, ["`fidelity` (epoch) must be a finite number"]),
    ({"batch_size": 64}, "3945", 5, ValueError, ["lacks hyperparameters", "learning_rate", "Fix"]),
    (lcbench_config(learning_rate=0.5), "3945", 5, ValueError, ["`config.learning_rate`", "0.5"]),
    (lcbench_config(num_layers="3"), "3945", 5, TypeError, ["`config.num_layers`", "'3'"]),
    (lcbench_config(num_layers=2.5), "3945", 5, ValueError, ["`config.num_layers`", "whole number"]),
])
def test_lcbench_bad_input_names_field_value_and_fix(lcbench: YahpoBenchmark, config: dict, instance: str,
                                                     fidelity: float, error: type, words: list[str]) -> None:
    with pytest.raises(error) as caught:
        lcbench.evaluate(config, instance, fidelity)
    for word in words:
        assert word in str(caught.value)


def test_missing_data_folder_names_the_path_and_the_fix(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="does not exist") as caught:
        YahpoBenchmark("lcbench", data_path=tmp_path)
    assert str(tmp_path / "lcbench") in str(caught.value) and DATA_ENV in str(caught.value)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="elsewhere"):
        YahpoBenchmark("lcbench")
    with pytest.raises(ValueError, match="not a YAHPO Gym scenario. Known: .*lcbench"):
        YahpoBenchmark("no_such_scenario", data_path=tmp_path)
    (tmp_path / "taskset").mkdir()
    with pytest.raises(ValueError, match="'taskset' records no runtime"):
        YahpoBenchmark("taskset", data_path=tmp_path)


# -- a second scenario: yahpo's own rbv2_glmnet configuration over a synthetic data folder -------

GLMNET_Y = ["acc", "bac", "auc", "brier", "f1", "logloss", "timetrain", "timepredict", "memory"]


def _glmnet_space() -> CS.ConfigurationSpace:
    space = CS.ConfigurationSpace()
    task = CS.CategoricalHyperparameter("task_id", ["3", "31"])
    impute = CS.CategoricalHyperparameter("num.impute.selected.cpo", ["impute.mean", "impute.median"])
    s = CS.UniformFloatHyperparameter("s", 2 ** -10, 2 ** 10, log=True)
    space.add([task, impute, CS.UniformFloatHyperparameter("alpha", 0.0, 1.0), s,
               CS.UniformFloatHyperparameter("trainsize", 0.03, 1.0),
               CS.UniformIntegerHyperparameter("repl", 1, 10)])
    space.add(CS.EqualsCondition(s, impute, "impute.median"))  # a conditional hyperparameter
    return space


def _linear_model(path: Path, weights: np.ndarray, n_cat: int) -> None:
    """An ONNX model y = [x_cat, x_cont] @ weights, with yahpo's input layout."""
    onnx = pytest.importorskip("onnx", reason="onnx builds the synthetic scenario's model")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x_cat"], ["cat_float"], to=TensorProto.FLOAT),
         helper.make_node("Concat", ["cat_float", "x_cont"], ["x"], axis=1),
         helper.make_node("MatMul", ["x", "w"], ["output"])],
        "synthetic",
        [helper.make_tensor_value_info("x_cat", TensorProto.INT32, ["n", n_cat]),
         helper.make_tensor_value_info("x_cont", TensorProto.FLOAT, ["n", weights.shape[0] - n_cat])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def write_glmnet_scenario(root: Path) -> np.ndarray:
    """A synthetic ``rbv2_glmnet`` data folder under ``root`` (yahpo's own scenario configuration, a
    linear ONNX model); returns the model's weights."""
    folder = root / "rbv2_glmnet"
    folder.mkdir(parents=True)
    with open(folder / "config_space.json", "w") as stream:
        _glmnet_space().to_json(stream)
    encoding = {"task_id": {"#na#": 0, "3": 1, "31": 2},
                "num.impute.selected.cpo": {"#na#": 0, "impute.mean": 1, "impute.median": 2}}
    (folder / "encoding.json").write_text(json.dumps(encoding))
    # Inputs: x_cat = (task_id, impute), x_cont = (alpha, s, trainsize, repl), yahpo's cat/cont order.
    weights = np.random.default_rng(0).normal(size=(6, len(GLMNET_Y)))
    weights[:, GLMNET_Y.index("timetrain")] = [0.0, 0.0, 0.0, 0.0, 100.0, 1.0]  # 100 * trainsize + repl
    _linear_model(folder / "model.onnx", weights, n_cat=2)
    return weights


@pytest.fixture
def glmnet(tmp_path: Path) -> tuple[YahpoBenchmark, np.ndarray]:
    weights = write_glmnet_scenario(tmp_path)
    return YahpoBenchmark("rbv2_glmnet", data_path=tmp_path), weights.astype(np.float32)


def test_second_scenario_metadata_comes_from_yahpos_configuration(glmnet: tuple) -> None:
    bench, _ = glmnet
    settings = compat.scenario_settings("rbv2_glmnet")
    assert settings["fidelity_params"] == ["trainsize", "repl"]
    # The first fidelity parameter is the budget; not an epoch, so it restarts; the others at maximum.
    assert (bench.fidelity.name, bench.fidelity.min, bench.fidelity.max) == ("trainsize", 0.03, 1.0)
    assert not bench.fidelity.continuable and not bench.fidelity.integer
    assert bench.held == {"repl": 10}
    assert bench.instance_param == settings["instance_names"] == "task_id"
    assert bench.instances == ["3", "31"]
    assert sorted(bench.space()) == ["alpha", "num.impute.selected.cpo", "s"]
    assert bench.metric_names == GLMNET_Y and (bench.metric, bench.mode) == ("acc", "max")
    assert bench.runtime_name == "timetrain"


def test_second_scenario_evaluates_through_the_same_path(glmnet: tuple) -> None:
    bench, weights = glmnet
    config = {"alpha": 0.25, "num.impute.selected.cpo": "impute.median", "s": 4.0}
    out = bench.evaluate(config, "31", 0.5)
    x = np.asarray([2, 2, 0.25, 4.0, 0.5, 10], dtype=np.float32)  # task 31, median, ..., repl at max
    expected = x @ weights
    for name, value in zip(GLMNET_Y, expected, strict=True):
        assert math.isclose(out[name], float(value), rel_tol=1e-5, abs_tol=1e-5), name
    assert out["cost/seconds"] == pytest.approx(100 * 0.5 + 10)
    assert out["fidelity/trainsize"] == 0.5
    # `s` is inactive unless impute.median: dropped before evaluating (yahpo encodes it as missing, 0).
    mean = {"alpha": 0.25, "num.impute.selected.cpo": "impute.mean"}
    assert bench.evaluate({**mean, "s": 4.0}, "31", 0.5) == bench.evaluate(mean, "31", 0.5)
    assert bench.evaluate(mean, "31", 0.5)["acc"] == pytest.approx(
        float(np.asarray([2, 1, 0.25, 0.0, 0.5, 10], np.float32) @ weights[:, 0]), rel=1e-5)
    with pytest.raises(ValueError, match=r"lacks hyperparameters \['s'\].*active"):
        bench.evaluate({"alpha": 0.25, "num.impute.selected.cpo": "impute.median"}, "31", 0.5)
    with pytest.raises(ValueError, match=r"must be in \[0.03, 1.0\]"):
        bench.evaluate(config, "31", 0.01)


def test_a_scenario_without_instance_parameter_lists_its_fixed_instances(tmp_path: Path) -> None:
    """nb301's configuration has no instance parameter but a fixed instance list; metadata only."""
    folder = tmp_path / "nb301"
    folder.mkdir()
    space = CS.ConfigurationSpace()
    space.add([CS.UniformIntegerHyperparameter("epoch", 1, 98),
               CS.CategoricalHyperparameter("op", ["conv", "pool"])])
    with open(folder / "config_space.json", "w") as stream:
        space.to_json(stream)
    (folder / "encoding.json").write_text("{}")
    _linear_model(folder / "model.onnx", np.ones((2, 2)), n_cat=1)
    bench = YahpoBenchmark("nb301", data_path=tmp_path)
    assert bench.instance_param is None and bench.instances == ["CIFAR10"]
    assert (bench.fidelity.name, bench.fidelity.max, bench.fidelity.continuable) == ("epoch", 98, True)
    assert list(bench.space()) == ["op"] and bench.runtime_name == "runtime"
    assert (bench.metric, bench.mode) == ("val_accuracy", "max")


# -- the ConfigSpace conversion and the compatibility module -----------------------------------

def test_configspace_conversion_covers_every_supported_kind() -> None:
    space = CS.ConfigurationSpace()
    kind = CS.CategoricalHyperparameter("kind", ["a", "b"])
    depth = CS.UniformIntegerHyperparameter("depth", 1, 8)
    space.add([kind, depth, CS.UniformFloatHyperparameter("lr", 1e-4, 1.0, log=True),
               CS.UniformIntegerHyperparameter("width", 16, 512, log=True),
               CS.OrdinalHyperparameter("size", ["S", "M", "L"]), CS.Constant("fixed", "yes")])
    space.add(CS.EqualsCondition(depth, kind, "b"))
    space.add(CS.ForbiddenAndConjunction(CS.ForbiddenEqualsClause(kind, "a"),
                                         CS.ForbiddenEqualsClause(space["size"], "L")))
    domains = ray_space(space)
    assert isinstance(domains["kind"], Categorical) and domains["kind"].categories == ["a", "b"]
    assert (domains["depth"].lower, domains["depth"].upper) == (1, 9)
    assert isinstance(domains["lr"].get_sampler(), LogUniform) and domains["lr"].lower == 1e-4
    assert isinstance(domains["width"].get_sampler(), LogUniform) and domains["width"].upper == 513
    assert domains["size"].categories == ["S", "M", "L"] and domains["fixed"] == "yes"
    values = {"kind": "a", "depth": np.int64(3), "lr": 0.01, "width": 64, "size": "M", "fixed": "yes"}
    active = active_values(space, values)
    assert active == {"kind": "a", "lr": 0.01, "width": 64, "size": "M", "fixed": "yes"}  # depth inactive
    assert type(active_values(space, {**values, "kind": "b"})["depth"]) is int
    with pytest.raises(ValueError, match="forbidden"):
        active_values(space, {**values, "size": "L"})
    with pytest.raises(ValueError, match=r"`config.size` must be one of \['S', 'M', 'L'\]"):
        active_values(space, {**values, "size": "XL"})
    normal = CS.ConfigurationSpace()
    normal.add(CS.NormalFloatHyperparameter("n", mu=0.0, sigma=1.0, lower=-3.0, upper=3.0))
    with pytest.raises(TypeError, match="NormalFloatHyperparameter"):
        ray_space(normal)


def test_configspace_stand_in_is_installed_only_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(CS.ConfigurationSpace, "_sort_hyperparameters", raising=False)
    assert compat.install_configspace_stand_in() is True
    assert compat.install_configspace_stand_in() is False
    space = _glmnet_space()
    before = list(space)
    space._sort_hyperparameters()  # type: ignore[attr-defined]
    assert list(space) == before


@needs_lcbench
def test_opening_a_scenario_leaves_yahpos_settings_alone() -> None:
    from yahpo_gym.local_config import local_config

    before = local_config._config
    bench = compat.open_benchmark("lcbench", DATA)
    assert local_config._config is before
    assert Path(bench.config.config["basedir"]) == DATA
    assert {"fcnet", "taskset", "lcbench", "rbv2_glmnet", "nb301"} <= set(compat.scenarios())
