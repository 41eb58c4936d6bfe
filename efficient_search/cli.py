"""``efficient-search``: run, submit and report experiments from the shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from efficient_search.api import RunResult


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="efficient-search", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the search a spec file describes")
    run.add_argument("spec", help="experiment spec (.yaml, .yml or .json), or preset:<open-sci-ref recipe>")
    run.add_argument("--store", help="override the spec's store root")
    run.add_argument("--name", help="override the experiment name")
    run.add_argument("--num-samples", type=int,
                     help="override the number of trials (with --resume: grow the experiment to N)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    run.add_argument("--verbose", action="store_true",
                     help="Ray Tune's status tables and every worker line instead of the live view")

    resume = commands.add_parser("resume", help="continue an interrupted experiment (searcher, "
                                                "scheduler and store as they were)")
    resume.add_argument("--store", required=True, help="store root the experiment wrote to")
    resume.add_argument("--experiment", required=True)
    resume.add_argument("--max-failures", type=int,
                        help="override how often a failed trial is retried from its checkpoint")

    submit = commands.add_parser("submit", help="submit `run SPEC` to a Ray cluster as a job")
    submit.add_argument("spec")
    submit.add_argument("--address", default="http://127.0.0.1:8265",
                        help="Ray dashboard address (default: %(default)s)")
    submit.add_argument("--working-dir", default=".", help="folder uploaded with the job")
    submit.add_argument("--no-wait", action="store_true", help="return after submitting")

    report = commands.add_parser("report", help="ranked table and plots of an experiment")
    report.add_argument("--store", required=True, help="store root")
    report.add_argument("--experiment", required=True)
    report.add_argument("--metric", help="rank by this metric (default: the run's)")
    report.add_argument("--mode", choices=["min", "max"])
    report.add_argument("--html", action="store_true",
                        help="also write one self-contained HTML page (plots, sortable table)")
    report.add_argument("--out", default=None,
                        help="plot folder (default: <store>/_plots, or ./plots for a URI store)")

    compare = commands.add_parser("compare", help="pretraining runs on the compute axis, against a "
                                                  "reference loss-compute trend")
    compare.add_argument("--store", required=True, help="store root")
    compare.add_argument("--experiments", required=True, help="comma-separated experiment names")
    compare.add_argument("--reference", default=None,
                         help="comma-separated experiments whose runs give the trend "
                              "(default: runs with init 'random' and distill 'none')")
    compare.add_argument("--out", default=None,
                         help="plot folder (default: <store>/_plots, or ./plots for a URI store)")
    from efficient_search.cluster.cli import add_parser as add_autoscale_parser
    from efficient_search.surrogate.cli import add_parser as add_meta_train_parser

    add_autoscale_parser(commands)
    add_meta_train_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "resume":
            return _resume(args)
        if args.command == "submit":
            from efficient_search.submit import submit

            _, status = submit(args.spec, address=args.address, working_dir=args.working_dir,
                               wait=not args.no_wait)
            print(f"job {status}")
            return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1
        if args.command == "compare":
            return _compare(args)
        if args.command == "autoscale":
            from efficient_search.cluster.cli import main as autoscale

            return autoscale(args)
        if args.command == "meta-train":
            from efficient_search.surrogate.cli import main as meta_train

            return meta_train(args)
        return _report(args)
    except (ValueError, TypeError) as exc:
        from efficient_search.redaction import redact_text

        print(redact_text(f"efficient-search: error: {exc}"), file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from efficient_search.api import run

    overrides = {k: v for k, v in {"store": args.store, "name": args.name,
                                   "num_samples": args.num_samples}.items() if v is not None}
    if args.resume:
        overrides["resume"] = True
    if args.verbose:
        overrides["verbose"] = 2
    from efficient_search.reference.presets import spec_argument

    return _summary(run(spec_argument(args.spec), **overrides))


def _resume(args: argparse.Namespace) -> int:
    from efficient_search.api import resume

    overrides = {} if args.max_failures is None else {"max_failures": args.max_failures}
    return _summary(resume(args.store, args.experiment, **overrides))


def _summary(result: RunResult) -> int:
    from efficient_search.report import ranked_table

    print(_table(ranked_table(result.store, result.spec.name, result.metric, result.mode)))
    print(f"\nstore: {result.store.root}  experiment: {result.spec.name}")
    print(f"report: efficient-search report --store {result.store.root} "
          f"--experiment {result.spec.name}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from efficient_search.report import objectives, pareto_front, ranked_table, save_pareto_plot, save_plots
    from efficient_search.store import ParquetStore

    store = ParquetStore(args.store)
    print(_table(ranked_table(store, args.experiment, args.metric, args.mode)))
    # Plots are local files; a bucket store puts them in ./plots unless --out says otherwise.
    out = args.out or ("plots" if "://" in store.root else f"{store.root.rstrip('/')}/_plots")
    paths = save_plots(store, args.experiment, out, args.metric, args.mode)
    if len(objectives(store, args.experiment)[0]) >= 2:
        print("\nPareto front:")
        print(_table(pareto_front(store, args.experiment)))
        paths.append(save_pareto_plot(store, args.experiment, out))
    if args.html:
        from efficient_search.html_report import write_html_report

        paths.append(write_html_report(store, args.experiment, Path(out) / f"{args.experiment}.html",
                                       args.metric, args.mode))
    for path in paths:
        print(f"saved {path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from efficient_search.reference.compare import (
        Trend,
        compute_axis_table,
        reference_points,
        save_compute_plot,
    )
    from efficient_search.store import ParquetStore

    store = ParquetStore(args.store)
    experiments = [name.strip() for name in args.experiments.split(",") if name.strip()]
    reference = None
    if args.reference is not None:
        reference = [name.strip() for name in args.reference.split(",") if name.strip()]
    table = compute_axis_table(store, experiments, reference)
    print(_table(table))
    print(f"\nreference trend: {Trend.from_dict(table.attrs['trend'])}")
    print("\nopen-sci-ref recipes on the compute axis (C = 6·N·D):")
    print(_table(reference_points()))
    out = args.out or ("plots" if "://" in store.root else f"{store.root.rstrip('/')}/_plots")
    print(f"saved {save_compute_plot(store, experiments, out, reference)}")
    return 0


def _table(frame: pd.DataFrame) -> str:
    with pd.option_context("display.width", 160, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        return frame.to_string(index=False)


if __name__ == "__main__":
    sys.exit(main())
