"""The sub-network evaluation task: how good are a sub-network's inherited weights?

A trial extracts the sub-network its configuration describes from a pretrained super-network
(:mod:`efficient_search.tasks.supernets`), measures its perplexity on held-out text before any
training, and reports it with the analytic parameter count and forward FLOPs. The held-out text
is the last ``val_fraction`` of the chosen corpus; the calibration batch that ranks units for the
``importance`` ordering comes from its start, so the two never overlap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch

from efficient_search.subnetwork import (
    Importance,
    SuperDims,
    compute_importance,
    count_flops,
    count_parameters,
    extract_subnetwork,
)
from efficient_search.subnetwork.importance import rank
from efficient_search.tasks import Task, register_task
from efficient_search.tasks.lm_eval import mean_token_loss, perplexity, token_windows
from efficient_search.tasks.supernets import (
    TINY_TEXT_CHARS,
    TINY_VAL_FRACTION,
    load_supernet,
    resolve_supernet,
)
from efficient_search.tasks.texts import corpus
from efficient_search.train.session import TrialSession

ORDERS = ("importance", "first-k")
TEXT_CHARS = TINY_TEXT_CHARS


def check_options(options: Mapping[str, Any]) -> None:
    """Choices the generic option check cannot see."""
    if options["order"] not in ORDERS:
        raise ValueError(
            f"`task_options.order` must be one of {', '.join(ORDERS)}, but got {options['order']!r}. "
            "Fix: order: importance."
        )
    corpus(options["text"], 1)  # unknown names raise with the valid ones
    if (options["model"], options["text"]) == ("tiny-shakespeare", "shakespeare") and \
            options["val_fraction"] < TINY_VAL_FRACTION:
        raise ValueError(
            f"`task_options.val_fraction` {options['val_fraction']} would measure 'tiny-shakespeare' "
            f"on text it was trained on (it holds out the last {TINY_VAL_FRACTION:.0%} of the plays). "
            f"Fix: val_fraction >= {TINY_VAL_FRACTION}."
        )


def split_text(options: Mapping[str, Any]) -> tuple[str, str]:
    """(calibration text, held-out text) of the chosen corpus."""
    text = corpus(options["text"], TEXT_CHARS)
    cut = int(len(text) * (1 - options["val_fraction"]))
    return text[:cut], text[cut:]


def option_key(options: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(options.items()))


@lru_cache(maxsize=4)
def _windows(path: str, key: tuple[Any, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    options = dict(key)
    _, tokenizer = load_supernet(path)
    calibration, held_out = split_text(options)
    seq_len = options["seq_len"]
    # Calibration windows come from the head of the corpus, held-out ones from its tail.
    return (token_windows(tokenizer, calibration[: 200 * seq_len * options["calibration_sequences"]],
                          seq_len, options["calibration_sequences"]),
            token_windows(tokenizer, held_out, seq_len, options["eval_sequences"]))


@lru_cache(maxsize=4)
def importance_of(path: str, key: tuple[Any, ...]) -> Importance:
    """Unit ranking of the super-network at ``path`` on the task's calibration batch (cached)."""
    model, _ = load_supernet(path)
    calibration, _ = _windows(path, key)
    return compute_importance(model, calibration[:, :-1])


def evaluate_subnetwork(params: Mapping[str, Any], options: Mapping[str, Any],
                        session: TrialSession, seed: int) -> None:
    """Extract the configured sub-network and report its held-out perplexity."""
    from efficient_search.search_spaces.subnetwork import subnetwork_from_config

    started = time.perf_counter()
    path = str(resolve_supernet(options["model"]))
    model, _ = load_supernet(path)
    dims = SuperDims.from_config(model.config)
    key = option_key(options)
    order: Importance | str = importance_of(path, key) if options["order"] == "importance" \
        else "first-k"
    layer_ranking = rank(order.layers) if isinstance(order, Importance) else None
    subnetwork = subnetwork_from_config(params, dims, layer_ranking)
    small = extract_subnetwork(model, subnetwork, order=order)
    _, held_out = _windows(path, key)
    loss = mean_token_loss(small, held_out, batch_size=options["batch_size"])
    session.report({
        "val_loss": loss,
        "val_perplexity": perplexity(loss),
        "params": count_parameters(dims, subnetwork),
        "cost/flops": count_flops(dims, subnetwork, options["seq_len"]),
        "cost/seconds": time.perf_counter() - started,
    })


SUBNETWORK = register_task(
    Task(
        name="subnetwork",
        train_loop=evaluate_subnetwork,
        metrics={"val_perplexity": "min", "val_loss": "min", "params": "min"},
        default_metric="val_perplexity",
        default_space="subnetwork",
        options={"model": "tiny-shakespeare", "text": "shakespeare", "order": "importance",
                 "seq_len": 128, "eval_sequences": 32, "calibration_sequences": 8,
                 "batch_size": 8, "val_fraction": 0.1},
        positive_options=("seq_len", "eval_sequences", "calibration_sequences", "batch_size"),
        fraction_options=("val_fraction",),
        check=check_options,
    )
)
