"""The open-sci-ref recipes as ready-made experiment specs (random-init baselines).

    import efficient_search as es
    from efficient_search.reference import preset_spec
    es.run(preset_spec("open-sci-ref-cpu-tiny", max_tokens=2_000_000))

or from the shell: ``efficient-search run preset:open-sci-ref-cpu-tiny``. GPU-sized recipes train
with DeepSpeed ZeRO-2 in bf16 on one GPU per worker; the scaled-down ``cpu`` recipes with DDP on
two CPU workers. The tokenizer and vocabulary are those of ``model`` (the recipes' own GPT-NeoX
tokenizer is not available offline).
"""

from __future__ import annotations

from typing import Any

from efficient_search.reference.recipes import get_recipe, open_sci_ref_parameters

PRESET_PREFIX = "preset:"
TOKENS_PER_PARAMETER = 20
"""Default budget: the compute-optimal rule of thumb of about 20 training tokens per parameter."""


def preset_spec(recipe: str, *, name: str | None = None, model: str = "tiny-shakespeare",
                max_tokens: int | None = None, store: str = "results", num_workers: int = 2,
                **task_options: Any) -> dict[str, Any]:
    """A spec (plain data) that trains ``recipe`` from random weights on ``model``'s tokenizer."""
    chosen = get_recipe(recipe)
    cpu = "-cpu-" in chosen.name
    if max_tokens is None:  # N with the vocabulary the run actually uses
        from transformers import AutoConfig

        from efficient_search.tasks.supernets import resolve_supernet

        vocab = int(AutoConfig.from_pretrained(resolve_supernet(model)).vocab_size)
        max_tokens = TOKENS_PER_PARAMETER * open_sci_ref_parameters(chosen.n_layer, chosen.n_embd, chosen.ffn,
                                                                    vocab)
    resources: dict[str, Any] = {"num_workers": num_workers, "cpus_per_worker": 1, "strategy": "ddp"}
    if not cpu:
        resources.update(strategy="deepspeed", gpus_per_worker=1, cpus_per_worker=4,
                         deepspeed_config={"zero_optimization": {"stage": 2}})
    return {
        "name": name or f"{chosen.name}-{model.replace('/', '-').strip('-.')}",
        "task": "pretrain",
        "task_options": {"model": model, "init": "random", "recipe": chosen.name, "seq_len": chosen.seq_len,
                         "max_tokens": int(max_tokens), "precision": "fp32" if cpu else "bf16",
                         **task_options},
        "search_space": {},
        "num_samples": 1,
        "resources": resources,
        "store": store,
    }


def spec_argument(argument: str) -> Any:
    """A spec path, or ``preset:<recipe>`` turned into that preset's spec."""
    if argument.startswith(PRESET_PREFIX):
        return preset_spec(argument[len(PRESET_PREFIX):])
    return argument
