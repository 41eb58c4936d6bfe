"""Quick-Tune's meta-learned surrogate and the meta-datasets it learns from (no Ray here).

- :class:`MetaDataset`: earlier runs' configs, learning curves (``N x T``, NaN unobserved), per-step
  costs and task meta-features; loaders for the Quick-Tune folder, QTT-SEG-layout CSVs and our Parquet
  store, told apart by :func:`load_meta_dataset`.
- :class:`DeepKernelSurrogate`: deep-kernel GP of the metric at a budget given the config, the partial
  curve and the task, plus a cost model; meta-trained by ``fit``, adapted by ``fine_tune``.
- :func:`cost_aware_expected_improvement`: the acquisition the Quick-Tune searcher and scheduler use.
- :func:`meta_train`: load, train, save (the ``efficient-search meta-train`` command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from efficient_search._lazy import lazy_exports

if TYPE_CHECKING:
    from efficient_search.surrogate.acquisition import (
        best_at_budgets,
        cost_aware_expected_improvement,
        expected_improvement,
    )
    from efficient_search.surrogate.deep_kernel import DeepKernelSurrogate
    from efficient_search.surrogate.encoding import ConfigEncoder, MetaFeatureScaler
    from efficient_search.surrogate.loading import detect_format, load_meta_dataset
    from efficient_search.surrogate.meta_dataset import MetaDataset, per_step_costs
    from efficient_search.surrogate.meta_training import meta_train
    from efficient_search.surrogate.qttseg import load_qttseg_csv
    from efficient_search.surrogate.quicktune import load_quicktune
    from efficient_search.surrogate.settings import SurrogateSettings
    from efficient_search.surrogate.store_data import load_store

_EXPORTS = {
    "ConfigEncoder": "efficient_search.surrogate.encoding",
    "DeepKernelSurrogate": "efficient_search.surrogate.deep_kernel",
    "MetaDataset": "efficient_search.surrogate.meta_dataset",
    "MetaFeatureScaler": "efficient_search.surrogate.encoding",
    "SurrogateSettings": "efficient_search.surrogate.settings",
    "best_at_budgets": "efficient_search.surrogate.acquisition",
    "cost_aware_expected_improvement": "efficient_search.surrogate.acquisition",
    "detect_format": "efficient_search.surrogate.loading",
    "expected_improvement": "efficient_search.surrogate.acquisition",
    "load_meta_dataset": "efficient_search.surrogate.loading",
    "load_qttseg_csv": "efficient_search.surrogate.qttseg",
    "load_quicktune": "efficient_search.surrogate.quicktune",
    "load_store": "efficient_search.surrogate.store_data",
    "meta_train": "efficient_search.surrogate.meta_training",
    "per_step_costs": "efficient_search.surrogate.meta_dataset",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = [
    "ConfigEncoder",
    "DeepKernelSurrogate",
    "MetaDataset",
    "MetaFeatureScaler",
    "SurrogateSettings",
    "best_at_budgets",
    "cost_aware_expected_improvement",
    "detect_format",
    "expected_improvement",
    "load_meta_dataset",
    "load_qttseg_csv",
    "load_quicktune",
    "load_store",
    "meta_train",
    "per_step_costs",
]
