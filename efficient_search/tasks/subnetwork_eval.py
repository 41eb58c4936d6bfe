"""The sub-network evaluation task: how good are a sub-network's inherited weights?

A trial extracts the sub-network its configuration describes from a pretrained super-network
(:mod:`efficient_search.tasks.supernets`), measures its perplexity on held-out text before any
training, and reports it with the analytic parameter count and forward FLOPs. The text is cut as
the ``pretrain`` task cuts it (:mod:`efficient_search.tasks.lm_splits`): by default (``split:
search``) the search selects on ``search`` windows, the same split the calibration batch that
ranks units for the ``importance`` ordering comes from, so a student pretrained from the chosen
sub-network is measured on ``validation`` text the search never read. ``split: validation``
scores on the validation tail instead (for studies of the search itself, not for selection).
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
from efficient_search.tasks.lm_eval import mean_token_loss, perplexity
from efficient_search.tasks.lm_splits import SCORED_SPLITS, lm_splits, scored_blocks
from efficient_search.tasks.supernets import (
    TINY_TEXT_CHARS,
    TINY_VAL_FRACTION,
    load_supernet,
    resolve_supernet,
)
from efficient_search.tasks.texts import corpus
from efficient_search.train.session import TrialSession

ORDERS = ("importance", "first-k")
SPLITS = SCORED_SPLITS


def check_options(options: Mapping[str, Any]) -> None:
    """Choices the generic option check cannot see."""
    if options["order"] not in ORDERS:
        raise ValueError(
            f"`task_options.order` must be one of {', '.join(ORDERS)}, but got {options['order']!r}. "
            "Fix: order: importance."
        )
    if options["split"] not in SPLITS:
        raise ValueError(f"`task_options.split` must be one of {', '.join(SPLITS)}, but got "
                         f"{options['split']!r}. Fix: split: search.")
    corpus(options["text"], 1)  # unknown names raise with the valid ones
    if not options["search_fraction"] < 1 - options["val_fraction"]:
        raise ValueError(f"`task_options.search_fraction` {options['search_fraction']} + val_fraction "
                         f"{options['val_fraction']} must stay below 1. Fix: e.g. 0.05 and 0.1.")
    tiny_validation = ("tiny-shakespeare", "shakespeare", "validation")
    if (options["model"], options["text"], options["split"]) == tiny_validation \
            and (options["val_fraction"] < TINY_VAL_FRACTION or options["max_chars"] != TINY_TEXT_CHARS):
        raise ValueError(
            f"`task_options.val_fraction` {options['val_fraction']} / max_chars {options['max_chars']} would "
            f"measure 'tiny-shakespeare' on text it was trained on (it holds out the last "
            f"{TINY_VAL_FRACTION:.0%} of {TINY_TEXT_CHARS:,} characters of the plays). Fix: val_fraction >= "
            f"{TINY_VAL_FRACTION}, max_chars: {TINY_TEXT_CHARS}."
        )


def option_key(options: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(options.items()))


@lru_cache(maxsize=4)
def _windows(path: str, key: tuple[Any, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration windows, scored windows), each (N, seq_len + 1), from the task's splits."""
    options = dict(key)
    splits = lm_splits(options)
    n_cal, n_eval = options["calibration_sequences"], options["eval_sequences"]
    calibration = splits.search[:n_cal]
    scored = scored_blocks(splits, options["split"], n_cal, n_eval)
    if len(calibration) < n_cal or len(scored) < n_eval:
        raise ValueError(f"The {options['split']} split of {options['max_chars']:,} characters holds too few "
                         f"blocks of {options['seq_len'] + 1} tokens for calibration_sequences {n_cal} and "
                         f"eval_sequences {n_eval}. Fix: a larger search_fraction or max_chars, or fewer "
                         "sequences.")
    return calibration, scored


@lru_cache(maxsize=4)
def importance_of(path: str, key: tuple[Any, ...]) -> Importance:
    """Unit ranking of the super-network at ``path`` on the task's calibration batch (cached)."""
    model, _ = load_supernet(path)
    calibration, _ = _windows(path, key)
    return compute_importance(model, calibration[:, :-1])


def evaluate_subnetwork(params: Mapping[str, Any], options: Mapping[str, Any],
                        session: TrialSession, seed: int) -> None:
    """Extract the configured sub-network and report its perplexity on the scored windows."""
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
        options={"model": "tiny-shakespeare", "text": "shakespeare", "order": "importance", "split": "search",
                 "seq_len": 128, "eval_sequences": 32, "calibration_sequences": 8, "batch_size": 8,
                 "max_chars": TINY_TEXT_CHARS, "val_fraction": TINY_VAL_FRACTION, "search_fraction": 0.05},
        positive_options=("seq_len", "eval_sequences", "calibration_sequences", "batch_size", "max_chars"),
        fraction_options=("val_fraction", "search_fraction"),
        check=check_options,
    )
)
