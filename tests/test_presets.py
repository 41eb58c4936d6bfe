"""open-sci-ref recipes as ready-made specs."""

from __future__ import annotations

import pytest

from efficient_search.reference import get_recipe, open_sci_ref_parameters, preset_spec
from efficient_search.reference.presets import TOKENS_PER_PARAMETER, spec_argument
from efficient_search.spec import ExperimentSpec
from efficient_search.tasks import get_task


def test_a_cpu_preset_is_a_valid_random_init_spec_on_the_teachers_vocabulary() -> None:
    data = preset_spec("open-sci-ref-cpu-tiny")
    spec = ExperimentSpec.from_dict(data)
    options = get_task("pretrain").resolve_options(spec.task_options)
    recipe = get_recipe("open-sci-ref-cpu-tiny")
    assert (options["init"], options["recipe"], options["seq_len"]) == ("random", recipe.name, recipe.seq_len)
    # ~20 tokens per parameter, counted with the tiny teacher's 1024-token vocabulary.
    n_params = open_sci_ref_parameters(recipe.n_layer, recipe.n_embd, recipe.ffn, vocab_size=1024)
    assert options["max_tokens"] == TOKENS_PER_PARAMETER * n_params
    assert (spec.resources.strategy, spec.resources.gpus_per_worker) == ("ddp", 0)
    assert spec.name == "open-sci-ref-cpu-tiny-tiny-shakespeare"


def test_a_gpu_preset_trains_with_zero2_in_bf16() -> None:
    data = preset_spec("open-sci-ref-0.13b", max_tokens=10**9, name="ref-013b")
    assert data["task_options"]["precision"] == "bf16" and data["task_options"]["max_tokens"] == 10**9
    assert data["resources"]["strategy"] == "deepspeed" and data["resources"]["gpus_per_worker"] == 1
    assert data["resources"]["deepspeed_config"] == {"zero_optimization": {"stage": 2}}


def test_the_cli_reads_preset_names_and_refuses_unknown_recipes() -> None:
    assert spec_argument("examples/pretrain.yaml") == "examples/pretrain.yaml"
    small = spec_argument("preset:open-sci-ref-cpu-small")
    assert small["task_options"]["recipe"] == "open-sci-ref-cpu-small"
    with pytest.raises(ValueError, match=r"Unknown reference recipe 'open-sci-ref-0.13B'\. Did you mean"):
        preset_spec("open-sci-ref-0.13B")
