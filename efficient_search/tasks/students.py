"""The student of a pretraining run and where its first weights come from.

Initialisations (``task_options.init``):

- ``random``: fresh weights, shaped like a sub-network of the teacher (``student`` or the trial's
  sub-network keys) or like an open-sci-ref ``recipe``;
- ``first-k`` / ``importance``: the teacher's weights of that sub-network, units kept in index
  order or by importance on a calibration batch of the training text;
- ``searched``: the sub-network a ``subnetwork`` search chose, read from its Parquet store (a trial
  id, or the best trial under ``max_params``), extracted exactly as that search evaluated it;
- ``pretrained``: a local Hugging Face folder (``student_model``) with the teacher's tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from efficient_search.reference import Recipe, get_recipe
from efficient_search.subnetwork import SubNetwork, SuperDims, compute_importance, extract_subnetwork
from efficient_search.subnetwork.importance import rank
from efficient_search.subnetwork.layout import initialised_model

INITS = ("random", "first-k", "importance", "searched", "pretrained")
#: Trial parameters that describe a sub-network (the ``subnetwork`` search space's keys).
SUBNETWORK_PREFIXES = ("n_layer", "layer_indices", "layer_order", "n_embd", "intermediate_size",
                       "heads_per_group", "n_heads", "n_query_groups", "head_size")
SEARCHED_KEYS = ("store", "experiment", "trial", "max_params")


def subnetwork_keys(params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that shape a sub-network."""
    return {k: v for k, v in params.items() if k.startswith(SUBNETWORK_PREFIXES)}


def student_shape(options: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The sub-network description: ``task_options.student`` overlaid with the trial's keys."""
    student = options.get("student") or {}
    if not isinstance(student, Mapping):
        raise TypeError(f"`task_options.student` must be a mapping of sub-network fields, but got "
                        f"{student!r}. Fix: e.g. student: {{n_layer: 3, n_embd: 64}}.")
    return {**student, **subnetwork_keys(params)}


def recipe_config(recipe: Recipe, teacher_config: Any, seq_len: int) -> Any:
    """A config of the teacher's architecture shaped like ``recipe`` (teacher's vocabulary)."""
    config = teacher_config.__class__.from_dict(teacher_config.to_dict())
    config.subnetwork_layout = None
    if config.model_type in ("llama", "mistral", "qwen2"):
        config.hidden_size, config.num_hidden_layers = recipe.n_embd, recipe.n_layer
        config.intermediate_size, config.num_attention_heads = recipe.ffn, recipe.n_heads
        config.num_key_value_heads, config.head_dim = recipe.n_heads, recipe.n_embd // recipe.n_heads
    elif config.model_type == "gpt_neox":
        config.hidden_size, config.num_hidden_layers = recipe.n_embd, recipe.n_layer
        config.intermediate_size, config.num_attention_heads = recipe.ffn, recipe.n_heads
    else:
        raise ValueError(f"`task_options.recipe` {recipe.name!r} needs a Llama-family or GPT-NeoX teacher, "
                         f"but the teacher is {config.model_type!r}. Fix: give the student as a sub-network "
                         "(`task_options.student`) instead.")
    config.max_position_embeddings = max(int(getattr(config, "max_position_embeddings", 0)), seq_len + 1)
    return config


def searched_trial(source: Mapping[str, Any], model_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trial configuration, the search's task options) of a ``subnetwork`` search in a store."""
    from efficient_search.store import ParquetStore
    from efficient_search.store.rows import RUNNING
    from efficient_search.tasks.supernets import resolve_supernet

    if not isinstance(source, Mapping) or not {"store", "experiment"} <= set(source):
        raise ValueError(f"`task_options.searched` must map store and experiment (and optionally trial, "
                         f"max_params), but got {source!r}. Fix: searched: {{store: results, "
                         "experiment: subnet-search, trial: best}.")
    unknown = set(source) - set(SEARCHED_KEYS)
    if unknown:
        raise ValueError(f"Unknown keys {sorted(unknown)} in `task_options.searched`. Valid: "
                         f"{', '.join(SEARCHED_KEYS)}.")
    store = ParquetStore(str(source["store"]))
    experiment = str(source["experiment"])
    if experiment not in store.experiments():  # else its empty metadata reads as "not a subnetwork search"
        raise ValueError(f"`task_options.searched.experiment` {experiment!r} is not in the store "
                         f"{store.root!r} (experiments there: {', '.join(store.experiments()) or 'none'}). "
                         "Fix: name an experiment of that store, or the store it was written to.")
    search_options = dict(store.metadata(experiment).get("spec", {}).get("task_options", {}))
    if store.metadata(experiment).get("spec", {}).get("task") != "subnetwork":
        raise ValueError(f"Experiment {experiment!r} in store {store.root!r} is not a `subnetwork` search. "
                         "Fix: name the experiment of a sub-network search.")
    searched_model = search_options.get("model", "tiny-shakespeare")
    if Path(resolve_supernet(searched_model)).resolve() != Path(model_path).resolve():
        raise ValueError(f"`task_options.searched` names a search over {searched_model!r}, but the teacher "
                         f"is {model_path!r}: the sub-network's weights come from the model searched. Fix: "
                         f"model: {searched_model}.")
    rows = store.results(experiment)
    last = rows[rows["status"] == RUNNING].sort_values("iteration").groupby("trial_id").tail(1)
    trial = source.get("trial", "best")
    if trial != "best":
        chosen = last[last["trial_id"] == trial]
        if chosen.empty:
            raise ValueError(f"Trial {trial!r} reported nothing in experiment {experiment!r}. Fix: one of "
                             f"{sorted(last['trial_id'])[:10]} or 'best'.")
    else:
        chosen = last.dropna(subset=["metric.val_perplexity"])
        if source.get("max_params") is not None:
            chosen = chosen[chosen["metric.params"] <= float(source["max_params"])]
        if chosen.empty:
            raise ValueError(f"No trial of experiment {experiment!r} has at most max_params="
                             f"{source.get('max_params')} parameters. Fix: raise max_params.")
        chosen = chosen.sort_values("metric.val_perplexity").head(1)
    row = chosen.iloc[0]
    config = {c.removeprefix("config."): row[c] for c in chosen.columns
              if c.startswith("config.") and row[c] == row[c]}  # drop NaN (keys of other variants)
    config = {k: v.item() if hasattr(v, "item") else v for k, v in config.items()}  # numpy -> Python
    config = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in config.items()}
    return config, search_options


def build_student(options: Mapping[str, Any], params: Mapping[str, Any], teacher: nn.Module,
                  model_path: str, calibration: torch.Tensor, seed: int) -> nn.Module:
    """The student model in train mode, on CPU, initialised as ``options['init']`` says."""
    from efficient_search.search_spaces.subnetwork import subnetwork_from_config

    init = options["init"]
    dims = SuperDims.from_config(teacher.config)
    torch.manual_seed(seed)
    if init == "pretrained":
        from transformers import AutoModelForCausalLM

        student = AutoModelForCausalLM.from_pretrained(options["student_model"], dtype=torch.float32)
    elif init == "searched":
        from efficient_search.tasks.subnetwork_eval import SUBNETWORK, importance_of, option_key

        config, search_options = searched_trial(options["searched"], model_path)
        resolved = SUBNETWORK.resolve_options(search_options)
        order: Any = importance_of(model_path, option_key(resolved)) \
            if resolved["order"] == "importance" else "first-k"
        ranking = None if isinstance(order, str) else rank(order.layers)
        student = extract_subnetwork(teacher, subnetwork_from_config(config, dims, ranking), order=order)
    else:
        shape = student_shape(options, params)
        if not shape and init == "random" and options.get("recipe"):
            config = recipe_config(get_recipe(options["recipe"]), teacher.config, options["seq_len"])
            student = initialised_model(type(teacher), config)
        elif not shape:
            raise ValueError(f"`task_options.init` {init!r} needs the student's shape: give "
                             "`task_options.student` (sub-network fields, e.g. {n_layer: 3, n_embd: 64}), "
                             "search over sub-network keys, or (for init random) a `recipe`.")
        else:
            order = compute_importance(teacher, calibration) if init == "importance" else "first-k"
            ranking = rank(order.layers) if init == "importance" else None
            subnetwork: SubNetwork = subnetwork_from_config(shape, dims, ranking)
            student = extract_subnetwork(teacher, subnetwork, order=order)
            if init == "random":
                torch.manual_seed(seed)
                student = initialised_model(type(student), student.config)
    student.train()
    return student


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters (tied weights once; ZeRO-3's partitioned ones at full size)."""
    seen = {id(p): int(getattr(p, "ds_numel", p.numel())) for p in model.parameters()}
    return sum(seen.values())


def check_tokenizers(teacher_path: str, student_path: str) -> None:
    """Distillation needs one vocabulary: raise when the two tokenizers differ."""
    from transformers import AutoConfig, AutoTokenizer

    teacher, student = (AutoTokenizer.from_pretrained(p) for p in (teacher_path, student_path))
    t_vocab, s_vocab = (AutoConfig.from_pretrained(p).vocab_size for p in (teacher_path, student_path))
    if t_vocab != s_vocab or teacher.get_vocab() != student.get_vocab():
        raise ValueError(
            f"The student {student_path!r} (vocabulary {s_vocab}, tokenizer of {len(student)} tokens) and "
            f"the teacher {teacher_path!r} (vocabulary {t_vocab}, {len(teacher)} tokens) use different "
            "tokenizers: distillation compares their next-token distributions id by id. Fix: a student "
            "with the teacher's tokenizer (e.g. init: first-k), or distill: none."
        )
