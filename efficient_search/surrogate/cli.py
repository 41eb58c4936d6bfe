"""The ``meta-train`` subcommand of ``efficient-search`` (parser and handler; torch loads on use)."""

from __future__ import annotations

import argparse
from typing import Any

SIZE_OPTIONS = {  # flag -> SurrogateSettings field
    "steps": "meta_train_steps",
    "max_train_points": "max_train_points",
    "batch_size": "batch_size",
    "hidden": "hidden",
    "features": "features",
    "cost_steps": "cost_train_steps",
}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``meta-train`` to the ``efficient-search`` subcommands (``commands`` from ``add_subparsers``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "meta-train", help="train a Quick-Tune surrogate on earlier learning curves",
        description="Meta-train the deep-kernel GP surrogate and its cost model on a meta-dataset: a "
                    "Quick-Tune folder, a QTT-SEG-layout CSV, a saved MetaDataset, or experiments of a "
                    "store.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--meta-dataset", metavar="PATH",
                        help="Quick-Tune folder (perf.json ...) or QTT-SEG-layout .csv, detected from its "
                             "contents")
    source.add_argument("--store", metavar="ROOT",
                        help="Parquet store root whose experiments become meta-data")
    parser.add_argument("--experiments", help="comma-separated experiments of --store (default: all)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write the surrogate to")
    parser.add_argument("--datasets", help="comma-separated data sets to train on (default: all)")
    parser.add_argument("--hold-out", help="comma-separated data sets to leave out (e.g. the task to tune)")
    parser.add_argument("--metric", help="metric to model (default: the source's)")
    parser.add_argument("--mode", choices=["min", "max"], help="direction of --metric")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="meta-training gradient steps (default: 1000)")
    parser.add_argument("--max-train-points", type=int,
                        help="cap on sampled training points (default: 20000)")
    parser.add_argument("--batch-size", type=int, help="points per meta-training batch (default: 128)")
    parser.add_argument("--hidden", type=int, help="hidden width of the feature extractor (default: 64)")
    parser.add_argument("--features", type=int, help="deep-kernel features (default: 16)")
    parser.add_argument("--cost-steps", type=int, help="cost-model training steps (default: 800)")
    return parser


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"a comma-separated list of names is needed, but got {text!r}.")
    return names


def main(args: argparse.Namespace) -> int:
    """Run ``meta-train`` for parsed ``args``; bad input raises ``ValueError`` naming the option."""
    from efficient_search.surrogate.meta_training import meta_train

    if args.experiments is not None and args.store is None:
        raise ValueError("`--experiments` needs `--store ROOT`. Fix: pass --store, or drop --experiments.")
    options: dict[str, Any] = {field: getattr(args, flag) for flag, field in SIZE_OPTIONS.items()
                               if getattr(args, flag) is not None}
    if args.metric is not None:
        options["metric"] = args.metric
    if args.mode is not None:
        options["mode"] = args.mode
    surrogate = meta_train(args.store if args.store is not None else args.meta_dataset, args.out,
                           experiments=_names(args.experiments), datasets=_names(args.datasets),
                           hold_out=_names(args.hold_out), seed=args.seed, log=print, **options)
    report = surrogate.report
    print(f"surrogate: {args.out}  metric: {surrogate.metric} ({surrogate.mode})  data sets: "
          f"{len(report['trained_on'])}  points: {report['train_points']}  seconds: {report['seconds']}")
    return 0
