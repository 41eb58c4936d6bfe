"""The scheduler contract suite over our scheduler and Ray's references."""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, TrialScheduler

from efficient_search.schedulers import (
    LayerFreezingScheduler,
    RestorableASHA,
    RestorableHyperBand,
    RestorableMedian,
)
from efficient_search.testing.schedulers import MAX_EPOCHS, METRIC, TIME_ATTR, SchedulerContract


class TestLayerFreezingContinue(SchedulerContract):
    restores_state = True

    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return LayerFreezingScheduler(max_trainable_layers=6, epochs=2, reduction_factor=2,
                                      promotion="continue", metric=METRIC, mode=mode)


class TestLayerFreezingRestart(SchedulerContract):
    restores_state = True

    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return LayerFreezingScheduler(max_trainable_layers=6, epochs=MAX_EPOCHS, min_epochs=1,
                                      reduction_factor=2, promotion="restart", metric=METRIC,
                                      mode=mode)


class TestRayASHA(SchedulerContract):
    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=MAX_EPOCHS, grace_period=1,
                             reduction_factor=2, metric=METRIC, mode=mode)


class TestRayHyperBand(SchedulerContract):
    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return HyperBandScheduler(time_attr=TIME_ATTR, max_t=MAX_EPOCHS, reduction_factor=2,
                                  metric=METRIC, mode=mode)


class TestRestorableASHA(SchedulerContract):
    restores_state = True

    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return RestorableASHA(seed=0, time_attr=TIME_ATTR, max_t=MAX_EPOCHS, grace_period=1,
                              reduction_factor=2, brackets=2, metric=METRIC, mode=mode)


class TestRestorableHyperBand(SchedulerContract):
    restores_state = True

    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return RestorableHyperBand(time_attr=TIME_ATTR, max_t=MAX_EPOCHS, reduction_factor=2,
                                   metric=METRIC, mode=mode)


class TestRestorableMedian(SchedulerContract):
    restores_state = True

    @staticmethod
    def make(mode: str) -> TrialScheduler:
        return RestorableMedian(time_attr=TIME_ATTR, grace_period=1, min_samples_required=2,
                                metric=METRIC, mode=mode)
