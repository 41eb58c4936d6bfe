"""efficient-search: cheap search over model architectures and training hyperparameters, on Ray."""

from efficient_search.api import RunResult, run
from efficient_search.spec import ExperimentSpec, Resources
from efficient_search.store import ParquetStore, ParquetStoreCallback

__version__ = "0.1.0"

__all__ = [
    "ExperimentSpec",
    "ParquetStore",
    "ParquetStoreCallback",
    "Resources",
    "RunResult",
    "__version__",
    "run",
]
