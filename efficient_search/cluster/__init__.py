"""Autoscaling experiments: a local autoscaling Ray cluster of fake nodes, a search on it, and the
figures of how the cluster served it (time to first trial, scale-up/down latency, pending time,
utilisation), recorded in the store beside the search.

Example::

    from efficient_search.cluster import ClusterOptions, run_on_cluster
    report = run_on_cluster("examples/autoscale.yaml", ClusterOptions(max_workers=3))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from efficient_search._lazy import lazy_exports

if TYPE_CHECKING:
    from efficient_search.cluster.config import ClusterOptions
    from efficient_search.cluster.fidelity import FidelityRequest, FidelityResources
    from efficient_search.cluster.harness import ClusterReport, run_on_cluster
    from efficient_search.cluster.local import LocalAutoscalingCluster

_EXPORTS = {
    "ClusterOptions": "efficient_search.cluster.config",
    "ClusterReport": "efficient_search.cluster.harness",
    "FidelityRequest": "efficient_search.cluster.fidelity",
    "FidelityResources": "efficient_search.cluster.fidelity",
    "LocalAutoscalingCluster": "efficient_search.cluster.local",
    "run_on_cluster": "efficient_search.cluster.harness",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["ClusterOptions", "ClusterReport", "FidelityRequest", "FidelityResources",
           "LocalAutoscalingCluster", "run_on_cluster"]
