"""``efficient-search autoscale SPEC.yaml``: run a spec on a local autoscaling cluster of fake nodes.

Wired into the main CLI with::

    from efficient_search.cluster import cli as autoscale_cli
    autoscale_cli.add_parser(commands)            # in _parser()
    if args.command == "autoscale": return autoscale_cli.main(args)

and runnable alone as ``python -m efficient_search.cluster SPEC.yaml [options]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``autoscale`` subcommand and its options."""
    parser = commands.add_parser(
        "autoscale", help="run a spec on a local autoscaling Ray cluster (fake nodes) and record "
                          "scale-up/down latency, pending time and utilisation")
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``autoscale``."""
    parser.add_argument("spec", help="experiment spec (.yaml, .yml or .json)")
    parser.add_argument("--node-types", default=None,
                        help="YAML of worker node types (available_node_types form; default: 1-CPU "
                             "nodes, see efficient_search/cluster/fake_cluster.yaml)")
    parser.add_argument("--min-workers", type=int, default=None,
                        help="min_workers of every worker type (default: the types' own)")
    parser.add_argument("--max-workers", type=int, default=None,
                        help="max_workers of every worker type (default: the types' own)")
    parser.add_argument("--head-cpus", type=int, default=0,
                        help="CPUs of the head node (default 0: trials run on worker nodes only)")
    parser.add_argument("--idle-timeout", type=float, default=6.0, metavar="SECONDS",
                        help="idle seconds before a worker node is removed (default: %(default)s)")
    parser.add_argument("--upscaling-speed", type=float, default=1.0,
                        help="autoscaler upscaling_speed (default: %(default)s)")
    parser.add_argument("--prewarm", type=int, default=0, metavar="N",
                        help="request N trial-sized bundles before the search starts (default 0)")
    parser.add_argument("--fixed", type=int, default=None, metavar="N",
                        help="compare: a fixed-size cluster of N workers of the first type")
    parser.add_argument("--fidelity-resources", default=None, metavar="KEY=MAX",
                        help="trials ask for CPUs in proportion to config[KEY] / MAX, e.g. "
                             "trainable_layers=6 (in-process trials only)")
    parser.add_argument("--min-cpus", type=float, default=0.25,
                        help="least CPUs of a low-fidelity trial (default: %(default)s)")
    parser.add_argument("--store", help="override the spec's store root")
    parser.add_argument("--name", help="override the experiment name")
    parser.add_argument("--num-samples", type=int, help="override the number of trials")
    parser.add_argument("--plot", default=None,
                        help="plot file (default: <store>/_plots/<name>-cluster.png)")


def main(args: argparse.Namespace) -> int:
    """Run ``autoscale`` with parsed ``args``; returns the exit status."""
    from efficient_search.cluster.config import ClusterOptions
    from efficient_search.cluster.fidelity import FidelityRequest
    from efficient_search.cluster.harness import run_on_cluster

    options = ClusterOptions.with_node_types_file(
        args.node_types, head_cpus=args.head_cpus, min_workers=args.min_workers,
        max_workers=args.max_workers, idle_timeout_s=args.idle_timeout,
        upscaling_speed=args.upscaling_speed, fixed=args.fixed)
    fidelity = (FidelityRequest.parse(args.fidelity_resources, min_cpus=args.min_cpus)
                if args.fidelity_resources else None)
    overrides = {k: v for k, v in {"store": args.store, "name": args.name,
                                   "num_samples": args.num_samples}.items() if v is not None}
    report = run_on_cluster(args.spec, options, prewarm=args.prewarm, fidelity=fidelity,
                            plot_path=args.plot, **overrides)
    summary = report.summary
    print(f"{report.mode}: makespan {summary['makespan_s']:.1f} s, utilisation "
          f"{summary['utilisation']:.0%}, resource-seconds {summary['resource_s']:.0f}, time to first "
          f"trial {summary['time_to_first_trial_s']:.1f} s, scale-up p50 "
          f"{summary['scale_up_s_p50']:.1f} s, scale-down p50 {summary['scale_down_s_p50']:.1f} s, "
          f"pending p50 {summary['pending_s_p50']:.1f} s")
    print(f"cluster rows: experiment {report.cluster_experiment!r} of the store")
    return 0


def standalone(argv: Sequence[str] | None = None) -> int:
    """``python -m efficient_search.cluster``: the same command without the main CLI."""
    import sys

    parser = argparse.ArgumentParser(prog="python -m efficient_search.cluster",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except (ValueError, TypeError) as exc:
        from efficient_search.redaction import redact_text

        print(redact_text(f"efficient-search: error: {exc}"), file=sys.stderr)
        return 2
