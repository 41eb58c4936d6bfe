"""Tabular and surrogate benchmarks behind one interface (no training): see
:mod:`efficient_search.blackbox.base`.

- :class:`Blackbox`, :class:`Fidelity`: the interface;
- :class:`YahpoBenchmark`: YAHPO Gym surrogates (needs yahpo-gym, installed with ``--no-deps``);
- :class:`TableBenchmark`: recorded learning curves (Quick-Tune, QTT-SEG layout), nearest-row lookup;
- :class:`ShortHorizon`: any of them with the fidelity cut to a shorter horizon.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from efficient_search._lazy import lazy_exports

if TYPE_CHECKING:
    from efficient_search.blackbox.base import COST_KEY, Blackbox, Fidelity
    from efficient_search.blackbox.horizon import ShortHorizon
    from efficient_search.blackbox.tables import TableBenchmark
    from efficient_search.blackbox.yahpo import YahpoBenchmark

_EXPORTS = {
    "COST_KEY": "efficient_search.blackbox.base",
    "Blackbox": "efficient_search.blackbox.base",
    "Fidelity": "efficient_search.blackbox.base",
    "ShortHorizon": "efficient_search.blackbox.horizon",
    "TableBenchmark": "efficient_search.blackbox.tables",
    "YahpoBenchmark": "efficient_search.blackbox.yahpo",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = ["COST_KEY", "Blackbox", "Fidelity", "ShortHorizon", "TableBenchmark", "YahpoBenchmark"]
