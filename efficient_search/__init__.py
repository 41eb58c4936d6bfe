"""efficient-search: cheap search over model architectures and training hyperparameters, on Ray.

The names below load on first use, so that importing a submodule (a searcher in a Ray worker,
the store in a notebook) does not pay for torch and the task registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from efficient_search._lazy import lazy_exports
from efficient_search.ray_compat import check_ray_version

check_ray_version()  # our Ray internals are checked for one Ray range only (ray_compat.RAY_SUPPORTED)

if TYPE_CHECKING:
    from efficient_search.api import RunResult, resume, run
    from efficient_search.spec import ExperimentSpec, Resources
    from efficient_search.store import ParquetStore, ParquetStoreCallback

__version__ = "0.1.0"

_EXPORTS = {
    "ExperimentSpec": "efficient_search.spec",
    "ParquetStore": "efficient_search.store",
    "ParquetStoreCallback": "efficient_search.store",
    "Resources": "efficient_search.spec",
    "RunResult": "efficient_search.api",
    "resume": "efficient_search.api",
    "run": "efficient_search.api",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["ExperimentSpec", "ParquetStore", "ParquetStoreCallback", "Resources", "RunResult",
           "__version__", "resume", "run"]
