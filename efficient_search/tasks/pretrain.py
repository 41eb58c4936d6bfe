"""The language-model pretraining task: a student trained on a token budget, optionally distilled.

Text comes from local files through ``datasets`` (a named corpus is written to files first), is
tokenized with the teacher's tokenizer and packed into blocks of ``seq_len + 1`` tokens, in three
disjoint splits (:mod:`efficient_search.tasks.lm_splits`): the student trains on ``train``, is
measured on the tail ``val_fraction`` (``validation``), and the ``search_fraction`` between them is
the only text importance estimation (``init: importance``) and a ``subnetwork`` search read
(``eval_split: search`` measures there instead, after the calibration blocks, to select settings
such as a KD temperature without reading ``validation``). The
student starts as ``init`` says (see :mod:`efficient_search.tasks.students`) and learns from the
labels alone (``distill: none``), from a frozen copy of the teacher in each worker (``online``)
or from the teacher's top-k logits computed once (``offline``). Hyperparameters come from the
trial's configuration where it has them, else from the options, else from the ``recipe``.
Every ``checkpoint_every``-th report (and the last) saves a checkpoint; a trial paused or failed
in between resumes from the one before.

    task: pretrain
    task_options: {model: tiny-shakespeare, init: first-k, student: {n_layer: 3, n_embd: 64},
                   distill: online, max_tokens: 200000}
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from efficient_search.reference import get_recipe
from efficient_search.tasks import Task, register_task
from efficient_search.tasks.lm_splits import SCORED_SPLITS, lm_splits, scored_blocks, split_key
from efficient_search.tasks.students import (
    INITS,
    build_student,
    check_tokenizers,
    parameter_count,
    searched_trial,
)
from efficient_search.tasks.supernets import (
    TINY_TEXT_CHARS,
    TINY_VAL_FRACTION,
    load_supernet,
    resolve_supernet,
)
from efficient_search.tasks.texts import CORPORA
from efficient_search.train.distill import KINDS
from efficient_search.train.lm_loop import Distillation, Optimisation, TokenBudget, fit_tokens, plan_steps
from efficient_search.train.schedules import SCHEDULES
from efficient_search.train.session import TrialSession
from efficient_search.train.strategy import PRECISIONS, zero_stage
from efficient_search.validate import check_int, is_number

DISTILL = ("none", "online", "offline")
#: Options a trial's configuration may choose (compare initialisations in one experiment).
PER_TRIAL = ("init", "distill")
#: Defaults of the options left None, when no recipe gives them.
FALLBACK = {"lr": 3e-3, "weight_decay": 0.05, "beta1": 0.9, "beta2": 0.95, "schedule": "wsd",
            "cooldown_fraction": 0.2}
#: name -> (lowest, lowest allowed, highest or None): checked where set.
NUMBERS = {"lr": (0.0, False, None), "weight_decay": (0.0, True, None), "beta1": (0.0, True, 0.999999),
           "beta2": (0.0, True, 0.999999), "cooldown_fraction": (0.0, True, 1.0),
           "grad_clip": (0.0, True, None), "alpha": (0.0, True, None), "beta": (0.0, True, None),
           "temperature": (0.0, False, None)}


def _choice(options: Mapping[str, Any], name: str, valid: tuple[str, ...]) -> None:
    if options[name] not in valid:
        raise ValueError(f"`task_options.{name}` must be one of {', '.join(valid)}, but got "
                         f"{options[name]!r}.")


def check_options(options: Mapping[str, Any]) -> None:
    """Everything that can be refused before a worker starts."""
    from transformers import AutoConfig

    _choice(options, "init", INITS)
    _choice(options, "distill", DISTILL)
    _choice(options, "kd_kind", KINDS)
    _choice(options, "precision", PRECISIONS)
    _choice(options, "eval_split", SCORED_SPLITS)
    if options["schedule"] is not None:
        _choice(options, "schedule", SCHEDULES)
    for name, (low, inclusive, high) in NUMBERS.items():
        value = options[name]
        if value is None:
            continue
        if not is_number(value, finite=True) or value < low or (value == low and not inclusive) \
                or (high is not None and value > high):
            bound = f" and <= {high:g}" if high is not None else ""
            raise ValueError(f"`task_options.{name}` must be a number {'>=' if inclusive else '>'} {low}"
                             f"{bound}, but got {value!r}.")
    if not options["search_fraction"] < 1 - options["val_fraction"]:
        raise ValueError(f"`task_options.search_fraction` {options['search_fraction']} leaves no training "
                         f"text beside val_fraction {options['val_fraction']}. Fix: search_fraction + "
                         "val_fraction < 1, e.g. 0.05 and 0.1.")
    check_int("task_options.warmup_steps", options["warmup_steps"], min=0, optional=True,
              expected="an int >= 0 or null")
    if options["recipe"] is not None:
        get_recipe(options["recipe"])  # unknown names raise with the valid ones
    if options["files"] is None:
        if options["text"] not in CORPORA:
            raise ValueError(f"`task_options.text` must be one of {', '.join(CORPORA)} (or give `files`), "
                             f"but got {options['text']!r}.")
    elif not isinstance(options["files"], list) or not all(os.path.isfile(str(f)) for f in options["files"]):
        raise ValueError(f"`task_options.files` must list existing local text files, but got "
                         f"{options['files']!r}. Fix: files: [data/train.txt].")
    plays = options["files"] is None and options["text"] == "shakespeare"
    if options["model"] == "tiny-shakespeare" and plays and \
            (options["max_chars"] != TINY_TEXT_CHARS or options["val_fraction"] < TINY_VAL_FRACTION):
        raise ValueError(
            f"`task_options.max_chars` {options['max_chars']} / `val_fraction` {options['val_fraction']} "
            "would "
            f"validate on plays 'tiny-shakespeare' was trained on (it holds out the last "
            f"{TINY_VAL_FRACTION:.0%} of its {TINY_TEXT_CHARS:,} characters). Fix: max_chars: "
            f"{TINY_TEXT_CHARS}, val_fraction >= {TINY_VAL_FRACTION}."
        )
    path = str(resolve_supernet(options["model"]))
    config = AutoConfig.from_pretrained(path)
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    # The teacher reads every sequence unless a recipe-shaped student trains alone.
    teacher_reads = options["distill"] != "none" or options["init"] != "random" or options["recipe"] is None
    if teacher_reads and max_positions is not None and options["seq_len"] > max_positions:
        raise ValueError(f"`task_options.seq_len` {options['seq_len']} is above the maximum of "
                         f"{max_positions} positions of {options['model']!r}. Fix: seq_len <= "
                         f"{max_positions}.")
    if options["init"] == "pretrained":
        if not isinstance(options["student_model"], str) or \
                not os.path.isfile(os.path.join(options["student_model"], "config.json")):
            raise ValueError(f"`task_options.init` pretrained needs `student_model`, a local folder with a "
                             f"config.json, but got {options['student_model']!r}.")
        check_tokenizers(path, options["student_model"])  # the text is tokenized with the teacher's
    if options["init"] == "searched" or options["searched"] is not None:
        searched_trial(options["searched"] or {}, path)
    if options["distill"] == "offline" and options["kd_kind"] != "forward_kl":
        raise ValueError(f"`task_options.kd_kind` {options['kd_kind']!r} needs the teacher's whole "
                         "distribution; offline top-k logits only support forward_kl. Fix: distill: "
                         "online, or kd_kind: forward_kl.")
    # The largest number of updates any worker count allows (one worker): too few even then is refused now.
    plan_steps(TokenBudget(options["max_tokens"], options["seq_len"], options["reports"]),
               Optimisation(micro_batch=options["batch_size"], grad_accum=options["grad_accum"],
                            warmup_steps=_setting("warmup_steps", {}, options)), world_size=1)


def _setting(name: str, params: Mapping[str, Any], options: Mapping[str, Any]) -> Any:
    """A trial's value, else the option, else the recipe's, else the fallback."""
    if name in params:
        return params[name]
    if options.get(name) is not None:
        return options[name]
    if options["recipe"] is not None:
        recipe = get_recipe(options["recipe"])
        from_recipe = {"lr": recipe.lr, "weight_decay": recipe.weight_decay, "beta1": recipe.betas[0],
                       "beta2": recipe.betas[1], "schedule": recipe.schedule,
                       "warmup_steps": recipe.warmup_steps, "cooldown_fraction": recipe.cooldown_fraction}
        if name in from_recipe:
            return from_recipe[name]
    return FALLBACK.get(name)


def pretrain(params: Mapping[str, Any], options: Mapping[str, Any], session: TrialSession, seed: int) -> None:
    """Build the student, then train it on the token budget (see the module docstring).

    ``init`` and ``distill`` may also come from the trial's configuration, so one experiment can
    compare initialisations (e.g. ``search_space: {init: {grid: [random, first-k, searched]}}``).
    """
    if any(k in params for k in PER_TRIAL):  # the trial chose them: check the combination it makes
        options = {**options, **{k: params[k] for k in PER_TRIAL if k in params}}
        check_options(options)
        if options["init"] == "searched" and not options["searched"]:
            raise ValueError("This trial's `init` is searched but `task_options.searched` is not set. Fix: "
                             "searched: {store: ..., experiment: ..., trial: best}.")
    path = str(resolve_supernet(options["model"]))
    teacher, tokenizer = load_supernet(path)
    splits = lm_splits(options)
    n_cal, n_eval = options["calibration_sequences"], options["eval_sequences"]
    train_blocks = splits.train
    val_blocks = scored_blocks(splits, options["eval_split"], n_cal, n_eval)
    if options["eval_split"] == "search" and len(val_blocks) < n_eval:
        raise ValueError(f"`task_options.eval_split` search holds {len(val_blocks)} blocks after the "
                         f"{n_cal} calibration ones, fewer than eval_sequences {n_eval}. Fix: a larger "
                         "search_fraction or max_chars, or fewer eval_sequences.")
    calibration = splits.search[:n_cal, :-1]  # importance never reads train
    student = build_student(options, params, teacher, path, calibration, seed)
    n_params = parameter_count(student)
    kd_settings = {"alpha": float(_setting("alpha", params, options)),
                   "beta": float(_setting("beta", params, options)),
                   "temperature": float(_setting("temperature", params, options)), "kind": options["kd_kind"]}
    if options["distill"] == "online":
        kd = Distillation(teacher=teacher, **kd_settings)
    elif options["distill"] == "offline":
        from efficient_search.train.teacher_logits import teacher_topk_cached

        digest = hashlib.sha256(f"{path}|{split_key(options)}|{options['topk']}".encode()).hexdigest()[:16]
        kd = Distillation(topk=teacher_topk_cached(path, train_blocks, k=options["topk"], key=digest),
                          **kd_settings)
    else:
        kd = Distillation()
    optim = Optimisation(
        lr=float(_setting("lr", params, options)),
        weight_decay=float(_setting("weight_decay", params, options)),
        betas=(float(_setting("beta1", params, options)), float(_setting("beta2", params, options))),
        schedule=str(_setting("schedule", params, options)),
        warmup_steps=_setting("warmup_steps", params, options),
        cooldown_fraction=float(_setting("cooldown_fraction", params, options)),
        micro_batch=int(_setting("batch_size", params, options)), grad_accum=options["grad_accum"],
        grad_clip=options["grad_clip"], precision=options["precision"],
    )

    def export(module: Any, folder: str) -> None:
        if session.strategy == "deepspeed" and zero_stage(session.deepspeed_config) == 3:
            return  # partitioned weights: the DeepSpeed checkpoint holds them
        module.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    fit_tokens(student, session, seed, train_blocks=train_blocks, val_blocks=val_blocks,
               budget=TokenBudget(options["max_tokens"], options["seq_len"], options["reports"]),
               optim=optim, kd=kd, n_params=n_params, teacher_params=parameter_count(teacher),
               extra={"init": options["init"]}, export=export, checkpoint_every=options["checkpoint_every"])


PRETRAIN = register_task(
    Task(
        name="pretrain",
        train_loop=pretrain,
        metrics={"val_loss": "min", "val_perplexity": "min", "train_loss": "min"},
        default_metric="val_loss",
        default_space="pretrain",
        options={"model": "tiny-shakespeare", "text": "shakespeare", "files": None,
                 "max_chars": TINY_TEXT_CHARS, "val_fraction": TINY_VAL_FRACTION, "search_fraction": 0.05,
                 "seq_len": 128,
                 "init": "random", "student": None, "recipe": None, "student_model": None, "searched": None,
                 "distill": "none", "alpha": 0.3, "beta": 0.7, "temperature": 10.0, "kd_kind": "forward_kl",
                 "topk": 32, "max_tokens": 200_000, "batch_size": 8, "grad_accum": 1, "grad_clip": 1.0,
                 "precision": "fp32", "lr": None, "weight_decay": None, "beta1": None, "beta2": None,
                 "schedule": None, "warmup_steps": None, "cooldown_fraction": None, "reports": 8,
                 "eval_sequences": 32, "calibration_sequences": 8, "eval_split": "validation",
                 "checkpoint_every": 1},
        positive_options=("max_chars", "seq_len", "topk", "max_tokens", "batch_size", "grad_accum", "reports",
                          "eval_sequences", "calibration_sequences", "checkpoint_every"),
        fraction_options=("val_fraction", "search_fraction"),
        check=check_options,
        zero3=True,
    )
)
