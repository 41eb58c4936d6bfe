"""Ray Tune schedulers of efficient-search, installed as ``efficient_search.schedulers``."""

from efficient_search.schedulers.asha import RestorableASHA
from efficient_search.schedulers.freeze_thaw import FreezeThawScheduler
from efficient_search.schedulers.hyperband import RestorableHyperBand
from efficient_search.schedulers.layer_freezing import LayerFreezingScheduler
from efficient_search.schedulers.median import RestorableMedian
from efficient_search.schedulers.rungs import Decision, Rung, RungLadder, make_rungs

__all__ = ["Decision", "FreezeThawScheduler", "LayerFreezingScheduler", "RestorableASHA",
           "RestorableHyperBand", "RestorableMedian", "Rung", "RungLadder", "make_rungs"]
