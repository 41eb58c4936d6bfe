"""The Quick-Tune surrogate: a meta-learned deep-kernel GP of learning curves plus a cost model.

``fit`` meta-trains on a :class:`~efficient_search.surrogate.meta_dataset.MetaDataset`; ``fine_tune``
adapts to a new task's observations (the GP then conditions on them); ``predict`` gives the metric's
mean and variance at a budget, ``predict_cost`` the seconds of that budget step. Saved as safetensors
(weights, observations) + JSON (encoders, normalisation, settings); never pickled.

Example::

    surrogate = DeepKernelSurrogate(seed=0).fit(load_meta_dataset(path).drop(["FLW"]))
    mean, variance = surrogate.predict(candidates, budgets=50, meta_features=flw_meta)
    surrogate.fine_tune(configs_so_far, curves_so_far, costs_so_far, meta_features=flw_meta)
    surrogate.save("surrogates/quicktune"); same = DeepKernelSurrogate.load("surrogates/quicktune")
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import gpytorch
import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from efficient_search.durable import atomic_path, atomic_write
from efficient_search.surrogate.cost_correction import CostCorrection
from efficient_search.surrogate.encoding import ConfigEncoder, MetaFeatureScaler
from efficient_search.surrogate.files import read_info
from efficient_search.surrogate.meta_dataset import MetaDataset
from efficient_search.surrogate.networks import CostModel, PerformanceModel
from efficient_search.surrogate.points import Points, build_points, sample_meta_points, task_points
from efficient_search.surrogate.settings import SurrogateSettings
from efficient_search.validate import check_int

FORMAT_VERSION = 1
WEIGHTS_FILE, INFO_FILE = "surrogate.safetensors", "surrogate.json"
MIN_SECONDS = 1e-6  # costs are modelled as log seconds
COST_BATCH = 256
COST_FIELDS = ("config", "budget", "meta", "log_seconds")

Configs: TypeAlias = "pd.DataFrame | Sequence[Mapping[str, Any]]"
MetaFeatures: TypeAlias = "Mapping[str, float] | Sequence[float] | np.ndarray | None"


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread: these networks are tiny, and on a busy 2-core machine two threads made
    meta-training 17x slower (196 s against 11 s, default settings) and predicting 500 candidates 8x
    slower (80 ms against 10 ms)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class DeepKernelSurrogate:
    """Performance and cost predictor for (config, budget, partial curve, task) points."""

    def __init__(self, *, settings: SurrogateSettings | None = None, seed: int = 0):
        if settings is not None and not isinstance(settings, SurrogateSettings):
            raise TypeError(f"`settings` must be a SurrogateSettings, but got {type(settings).__name__}.")
        check_int("seed", seed, error=TypeError)
        self.settings = settings or SurrogateSettings()
        self.seed = seed
        self._fitted = False
        self._observations: Points | None = None
        self._cost_observations: tuple[np.ndarray, ...] | None = None
        self._cost_residuals: np.ndarray | None = None
        self._cost_correction: CostCorrection | None = None
        self._task_meta: np.ndarray | None = None
        self.report: dict[str, Any] = {}

    # -- meta-training -------------------------------------------------------------------
    def fit(self, data: MetaDataset) -> DeepKernelSurrogate:
        """Meta-train both models on ``data``; returns ``self``."""
        if not isinstance(data, MetaDataset):
            raise TypeError(f"`data` must be a MetaDataset, but got {type(data).__name__}. Fix: load one "
                            f"with load_meta_dataset(path).")
        started = time.perf_counter()
        s = self.settings
        rng = np.random.default_rng(self.seed)
        self.encoder = ConfigEncoder.fit(data.configs)
        self.scaler = MetaFeatureScaler.fit(data.meta_features)
        self.metric, self.mode, self.budget_name = data.metric, data.mode, data.budget_name
        self.budgets = data.budgets.copy()
        observed = data.curves[np.isfinite(data.curves)]
        self.y_mean = float(observed.mean())
        self.y_std = float(observed.std()) if observed.std() > 0 else 1.0
        self.datasets = data.dataset_names

        config = self.encoder.transform(data.configs)
        meta_rows = {d: self.scaler.vector(data.meta_features.loc[d].to_numpy()) for d in self.datasets}
        meta = np.stack([meta_rows[d] for d in data.datasets]) if self.scaler.width else \
            np.zeros((data.n_rows, 0), np.float32)
        curves = (data.curves - self.y_mean) / self.y_std
        rows, steps, prefix = sample_meta_points(data.curves, s.max_train_points, rng)
        points = build_points(config, curves, meta, self._normalised_budgets(), rows, steps, prefix)

        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.performance = PerformanceModel(self.encoder.width, self.scaler.width, hidden=s.hidden,
                                                features=s.features, curve_channels=s.curve_channels)
            self.cost = CostModel(self.encoder.width, self.scaler.width, hidden=s.cost_hidden)
        groups = [np.flatnonzero(data.datasets[rows] == d) for d in self.datasets]
        groups = [g for g in groups if g.size >= 2]
        with _one_thread():
            loss = self._train_performance(points, groups, s.meta_train_steps, s.learning_rate, rng)
            cost_loss = self._fit_cost(data, config, meta, rng)
        self._meta_performance = _state(self.performance)
        self._fitted = True
        self._set_observations(None)
        self.report = {"train_points": len(points), "datasets": len(self.datasets),
                       "final_loss": loss, "cost_final_loss": cost_loss,
                       "seconds": round(time.perf_counter() - started, 3)}
        return self

    def _normalised_budgets(self, budgets: np.ndarray | None = None) -> np.ndarray:
        values = self.budgets if budgets is None else budgets
        return np.asarray(values, dtype=np.float64) / float(self.budgets[-1])

    def _loss(self, batch: Points) -> torch.Tensor:
        gp = self.performance.gp
        z = self.performance.extractor(batch.config, batch.budget, batch.curve, batch.mask, batch.meta)
        gp.set_train_data(z, batch.target, strict=False)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(gp.likelihood, gp)
        loss = -mll(gp(z), batch.target)
        mean_error = torch.mean((gp.mean_module(z) - batch.target) ** 2)
        return loss + self.settings.mean_weight * mean_error

    def _train_performance(self, points: Points, groups: list[np.ndarray], steps: int, lr: float,
                           rng: np.random.Generator | None) -> float:
        """``steps`` Adam steps; each on one group's batch (drawn with ``rng``), or on all points."""
        self.performance.train()
        optimizer = torch.optim.Adam(self.performance.parameters(), lr=lr)
        loss_value = math.nan
        for _ in range(steps):
            if rng is not None and groups:
                group = groups[int(rng.integers(len(groups)))]
                size = min(self.settings.batch_size, group.size)
                batch = points.take(np.sort(rng.choice(group, size=size, replace=False)))
            else:
                batch = points
            optimizer.zero_grad()
            loss = self._loss(batch)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
        self.performance.gp.clear_data()
        self.performance.eval()
        return loss_value

    def _cost_points(self, config: np.ndarray, costs: np.ndarray, meta: np.ndarray, max_points: int,
                     rng: np.random.Generator) -> tuple[torch.Tensor, ...] | None:
        rows, steps = np.nonzero(np.isfinite(costs))
        if rows.size == 0:
            return None
        if rows.size > max_points:
            keep = np.sort(rng.choice(rows.size, size=max_points, replace=False))
            rows, steps = rows[keep], steps[keep]
        target = (np.log(np.maximum(costs[rows, steps], MIN_SECONDS)) - self.cost_mean) / self.cost_std
        return (torch.as_tensor(config[rows]), torch.as_tensor(self._normalised_budgets()[steps],
                                                               dtype=torch.float32),
                torch.as_tensor(meta[rows]), torch.as_tensor(target, dtype=torch.float32))

    def _fit_cost(self, data: MetaDataset, config: np.ndarray, meta: np.ndarray,
                  rng: np.random.Generator) -> float:
        finite = data.costs[np.isfinite(data.costs)]
        log_costs = np.log(np.maximum(finite, MIN_SECONDS)) if finite.size else np.zeros(1)
        self.cost_mean = float(log_costs.mean())
        self.cost_std = float(log_costs.std()) if log_costs.std() > 0 else 1.0
        points = self._cost_points(config, data.costs, meta, self.settings.max_train_points, rng)
        self.has_cost_data = points is not None
        if points is None:
            return math.nan
        return self._train_cost(points, self.settings.cost_train_steps, self.settings.learning_rate, rng)

    def _train_cost(self, points: tuple[torch.Tensor, ...], steps: int, lr: float,
                    rng: np.random.Generator) -> float:
        config, budget, meta, target = points
        self.cost.train()
        optimizer = torch.optim.Adam(self.cost.parameters(), lr=lr)
        loss_value = math.nan
        for _ in range(steps):
            i = torch.as_tensor(np.sort(rng.choice(len(target), size=min(COST_BATCH, len(target)),
                                                   replace=False)))
            optimizer.zero_grad()
            loss = torch.mean((self.cost(config[i], budget[i], meta[i]) - target[i]) ** 2)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
        self.cost.eval()
        return loss_value

    def _log_cost(self, config: np.ndarray, budget: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """The meta-trained model's log seconds, before the task's correction."""
        with torch.no_grad(), _one_thread():
            out = self.cost(torch.as_tensor(config, dtype=torch.float32),
                            torch.as_tensor(self._normalised_budgets(budget), dtype=torch.float32),
                            torch.as_tensor(meta, dtype=torch.float32)).numpy().astype(np.float64)
        return out * self.cost_std + self.cost_mean

    # -- a new task ----------------------------------------------------------------------
    def fine_tune(self, configs: Configs, curves: np.ndarray, costs: np.ndarray | None = None, *,
                  meta_features: MetaFeatures = None) -> DeepKernelSurrogate:
        """Adapt to a task from everything observed on it so far.

        ``curves`` and ``costs`` are ``(N, T')`` like a MetaDataset's (columns are the meta-training budgets,
        NaN unobserved; costs in per-step seconds). Each call starts again from the meta-trained weights, so
        pass all of the task's observations, not only the new ones; the result does not depend on how they
        arrived. Returns ``self``.
        """
        self._require_fitted()
        config = self.encoder.transform(configs)
        curves = self._curve_array(curves, len(config), "curves")
        meta_vector = self.scaler.vector(meta_features)
        meta = np.repeat(meta_vector[None, :], len(config), axis=0)
        rng = np.random.default_rng(self.seed)
        self.performance.load_state_dict(self._meta_performance)
        self._task_meta = meta_vector
        rows, steps, prefix = task_points(curves, self.settings.max_observations, rng)
        if rows.size == 0:
            self._set_observations(None)
        else:
            normalised = (curves - self.y_mean) / self.y_std
            points = build_points(config, normalised, meta, self._normalised_budgets(), rows, steps, prefix)
            if self.settings.fine_tune_steps and len(points) >= 3:
                with _one_thread():
                    self._train_performance(points, [], self.settings.fine_tune_steps,
                                            self.settings.fine_tune_learning_rate, None)
            self._set_observations(points)
        self._set_cost_observations(None)
        if costs is not None:
            costs = self._curve_array(costs, len(config), "costs")
            rows, steps = np.nonzero(np.isfinite(costs))
            if rows.size:
                self._set_cost_observations(
                    (config[rows], self.budgets[steps], meta[rows], np.log(np.maximum(costs[rows, steps],
                                                                                      MIN_SECONDS))))
        return self

    def reset(self) -> DeepKernelSurrogate:
        """Back to the meta-trained state: no task observations."""
        self._require_fitted()
        self.performance.load_state_dict(self._meta_performance)
        self._task_meta = None
        self._set_observations(None)
        self._set_cost_observations(None)
        return self

    def _set_observations(self, points: Points | None) -> None:
        self._observations = points
        gp = self.performance.gp
        gp.clear_data()
        if points is not None:
            with torch.no_grad():
                z = self.performance.extractor(points.config, points.budget, points.curve, points.mask,
                                               points.meta)
            gp.set_train_data(z, points.target, strict=False)

    def _set_cost_observations(self, observed: tuple[np.ndarray, ...] | None) -> None:
        """Task step costs ``(config, budget, meta, log seconds)``; residuals correct ``predict_cost``."""
        self._cost_observations = observed
        self._cost_residuals = None
        self._cost_correction = None
        if observed is not None:
            config, budget, meta, log_seconds = observed
            self._cost_residuals = log_seconds - self._log_cost(config, budget, meta)
            self._cost_correction = CostCorrection(config, self._cost_residuals)

    @property
    def n_observations(self) -> int:
        """How many task points the GP conditions on."""
        return 0 if self._observations is None else len(self._observations)

    # -- prediction ----------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ValueError("the surrogate is not trained yet. Fix: call fit(meta_dataset) or "
                             "DeepKernelSurrogate.load(path) first.")

    def _curve_array(self, curves: Any, n: int, name: str) -> np.ndarray:
        array = np.asarray(curves, dtype=np.float64)
        if array.ndim == 1 and n == 1:
            array = array[None, :]
        steps = len(self.budgets)
        if array.ndim != 2 or array.shape[0] != n or array.shape[1] > steps:
            raise ValueError(f"`{name}` must have shape (N, T) with N = {n} configs and T <= {steps} budget "
                             f"steps, but got {array.shape}.")
        if np.isinf(array).any():
            raise ValueError(f"`{name}` must hold finite values or NaN (unobserved), but some are infinite.")
        out = np.full((n, steps), np.nan)
        out[:, : array.shape[1]] = array
        return out

    def _budget_array(self, budgets: Any, n: int) -> np.ndarray:
        array = np.broadcast_to(np.asarray(budgets, dtype=np.float64), (n,)) if np.ndim(budgets) == 0 else \
            np.asarray(budgets, dtype=np.float64)
        if array.shape != (n,):
            raise ValueError(f"`budgets` must be one number or one per config ({n}), but got shape "
                             f"{array.shape}.")
        if not np.isfinite(array).all() or (array <= 0).any():
            raise ValueError(f"`budgets` must be positive {self.budget_name} values, but got "
                             f"{array[~(np.isfinite(array) & (array > 0))][:5].tolist()}.")
        return array

    def _meta_block(self, meta_features: MetaFeatures, n: int) -> np.ndarray:
        if meta_features is None and self._task_meta is not None:
            vector = self._task_meta
        else:
            vector = self.scaler.vector(meta_features)
        return np.repeat(vector[None, :], n, axis=0)

    def _query(self, configs: Configs, budgets: Any,
               meta_features: MetaFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        config = self.encoder.transform(configs)
        n = len(config)
        return config, self._budget_array(budgets, n), self._meta_block(meta_features, n)

    def predict(self, configs: Configs, budgets: float | Sequence[float] | np.ndarray,
                curves: np.ndarray | None = None, *,
                meta_features: MetaFeatures = None, latent: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance ``(N,)`` of the metric after ``budgets`` (in the metric's own units).

        ``curves`` ``(N, T')`` are the configs' observed values so far (NaN unobserved; columns are the
        meta-training budgets); only steps before each point's budget are used. ``meta_features``
        default to the fine-tuned task's. ``latent=True`` leaves the observation noise out of the
        variance: the uncertainty about the curve itself, which an acquisition should weigh (with the
        noise, a config next to one already observed keeps a variance that training it again cannot
        reduce); the default is the distribution of an observed value (calibration, likelihoods).
        """
        self._require_fitted()
        config, budget, meta = self._query(configs, budgets, meta_features)
        n = len(config)
        if curves is None:
            raw = np.full((n, len(self.budgets)), np.nan)
        else:
            raw = self._curve_array(curves, n, "curves")
        prefix = np.searchsorted(self.budgets, budget, side="left")  # steps strictly before the budget
        visible = np.arange(len(self.budgets))[None, :] < prefix[:, None]
        normalised = (raw - self.y_mean) / self.y_std
        mask = visible & np.isfinite(normalised)
        with torch.no_grad(), gpytorch.settings.fast_pred_var(), _one_thread():
            z = self.performance.extractor(
                torch.as_tensor(config),
                torch.as_tensor(self._normalised_budgets(budget), dtype=torch.float32),
                torch.as_tensor(np.where(mask, normalised, 0.0), dtype=torch.float32),
                torch.as_tensor(mask, dtype=torch.float32), torch.as_tensor(meta))
            output = self.performance.gp(z)
            if not latent:
                output = self.performance.gp.likelihood(output)
            mean, variance = output.mean.numpy(), output.variance.numpy()
        return (mean.astype(np.float64) * self.y_std + self.y_mean,
                variance.astype(np.float64) * self.y_std ** 2)

    def predict_cost(self, configs: Configs, budgets: float | Sequence[float] | np.ndarray, *,
                     meta_features: MetaFeatures = None) -> np.ndarray:
        """Predicted seconds ``(N,)`` of the single step that ends at each budget.

        After :meth:`fine_tune` with ``costs``, the task's observed step costs correct the meta-trained
        prediction (see :mod:`~efficient_search.surrogate.cost_correction`).
        """
        self._require_fitted()
        config, budget, meta = self._query(configs, budgets, meta_features)
        log_seconds = self._log_cost(config, budget, meta)
        if self._cost_correction is not None:
            log_seconds = log_seconds + self._cost_correction(config)
        return np.exp(log_seconds)

    # -- plain-data state ----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Everything but the weights, as JSON-able data."""
        self._require_fitted()
        return {
            "version": FORMAT_VERSION, "seed": self.seed, "settings": self.settings.to_dict(),
            "encoder": self.encoder.to_dict(), "meta_features": self.scaler.to_dict(),
            "metric": self.metric, "mode": self.mode, "budget_name": self.budget_name,
            "budgets": self.budgets.tolist(), "datasets": self.datasets,
            "normalisation": {"y_mean": self.y_mean, "y_std": self.y_std, "cost_mean": self.cost_mean,
                              "cost_std": self.cost_std},
            "has_cost_data": self.has_cost_data,
            "task_meta_features": None if self._task_meta is None else self._task_meta.tolist(),
            "report": self.report,
        }

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the folder ``path`` (``surrogate.safetensors`` + ``surrogate.json``); returns it."""
        info = self.info()
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        parts = (("performance.", self.performance.state_dict()), ("cost.", self.cost.state_dict()),
                 ("meta_performance.", self._meta_performance))
        for prefix, state in parts:
            tensors.update({prefix + k: v.detach().contiguous().clone() for k, v in state.items()})
        if self._observations is not None:
            observed = self._observations.tensors()
            tensors.update({f"observations.{k}": v.contiguous() for k, v in observed.items()})
        if self._cost_observations is not None:
            tensors.update({f"cost_observations.{name}": torch.as_tensor(np.ascontiguousarray(v))
                            for name, v in zip(COST_FIELDS, self._cost_observations, strict=True)})
        weights = os.path.join(path, WEIGHTS_FILE)
        with atomic_path(weights) as temp:
            save_file(tensors, temp)
        atomic_write(os.path.join(path, INFO_FILE), json.dumps(info, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeepKernelSurrogate:
        """A surrogate saved by :meth:`save`, in the same state (task observations included)."""
        path = os.fspath(path)
        info = read_info(path, INFO_FILE, FORMAT_VERSION, "holds no saved surrogate",
                         "pass the folder that save() or `efficient-search meta-train --out` wrote.")
        surrogate = cls(settings=SurrogateSettings.from_dict(info["settings"]), seed=int(info["seed"]))
        surrogate._restore(info, load_file(os.path.join(path, WEIGHTS_FILE)))
        return surrogate

    def _restore(self, info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        s = self.settings
        self.encoder = ConfigEncoder.from_dict(info["encoder"])
        self.scaler = MetaFeatureScaler.from_dict(info["meta_features"])
        self.metric, self.mode, self.budget_name = info["metric"], info["mode"], info["budget_name"]
        self.budgets = np.asarray(info["budgets"], dtype=np.float64)
        self.datasets = list(info["datasets"])
        norm = info["normalisation"]
        self.y_mean, self.y_std = float(norm["y_mean"]), float(norm["y_std"])
        self.cost_mean, self.cost_std = float(norm["cost_mean"]), float(norm["cost_std"])
        self.has_cost_data = bool(info["has_cost_data"])
        self.report = dict(info.get("report", {}))
        self.performance = PerformanceModel(self.encoder.width, self.scaler.width, hidden=s.hidden,
                                            features=s.features, curve_channels=s.curve_channels)
        self.cost = CostModel(self.encoder.width, self.scaler.width, hidden=s.cost_hidden)

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.performance.load_state_dict(part("performance."))
        self.cost.load_state_dict(part("cost."))
        self._meta_performance = part("meta_performance.")
        self.performance.eval()
        self.cost.eval()
        task_meta = info.get("task_meta_features")
        self._task_meta = None if task_meta is None else np.asarray(task_meta, dtype=np.float32)
        self._fitted = True
        observations = part("observations.")
        self._set_observations(Points.from_tensors(observations) if observations else None)
        cost_observed = part("cost_observations.")
        self._set_cost_observations(tuple(cost_observed[name].numpy() for name in COST_FIELDS)
                                    if cost_observed else None)

    def copy(self) -> DeepKernelSurrogate:
        """An independent copy (e.g. to fine-tune per task while keeping the meta-trained one)."""
        return copy.deepcopy(self)

