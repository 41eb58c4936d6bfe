"""The torch modules of the surrogate: a deep-kernel GP over (config, budget, curve, task) and a cost MLP.

Inputs of one point, all float32:

- ``config``: ``(B, C)`` encoded hyperparameters (see ``encoding.ConfigEncoder``),
- ``budget``: ``(B,)`` budget divided by the largest meta-training budget,
- ``curve`` and ``mask``: ``(B, T)`` normalised metric values of the observed prefix (0 where unobserved)
  and 1 where observed; only steps before the budget are ever unmasked,
- ``meta``: ``(B, M)`` scaled task meta-features (``M`` may be 0).
"""

from __future__ import annotations

import gpytorch
import torch
from torch import nn


class CurveEncoder(nn.Module):
    """Masked 1-D convolutions over the observed prefix, plus its last value and length."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(2, channels, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, padding=1), nn.ReLU(),
        )
        self.width = channels + 3

    def forward(self, curve: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.stack([curve * mask, mask], dim=1)  # (B, 2, T)
        h = self.conv(x) * mask.unsqueeze(1)  # (B, K, T), ReLU output >= 0 so unobserved steps pool to 0
        pooled = h.max(dim=2).values  # (B, K)
        steps = torch.arange(1, curve.shape[1] + 1, dtype=curve.dtype, device=curve.device)
        last = (mask * steps).argmax(dim=1)  # index of the last observed step, 0 if none
        has_any = mask.amax(dim=1)  # (B,)
        last_value = curve.gather(1, last.unsqueeze(1)).squeeze(1) * has_any
        length = (last.to(curve.dtype) + 1) / curve.shape[1] * has_any
        return torch.cat([pooled, last_value[:, None], length[:, None], has_any[:, None]], dim=1)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FeatureExtractor(nn.Module):
    """Everything about one point as ``features`` numbers the GP kernel compares."""

    def __init__(self, config_width: int, meta_width: int, *, hidden: int, features: int,
                 curve_channels: int):
        super().__init__()
        self.curve = CurveEncoder(curve_channels)
        self.net = mlp([config_width + 1 + self.curve.width + meta_width, hidden, hidden, features])

    def forward(self, config: torch.Tensor, budget: torch.Tensor, curve: torch.Tensor, mask: torch.Tensor,
                meta: torch.Tensor) -> torch.Tensor:
        x = torch.cat([config, budget[:, None], self.curve(curve, mask), meta], dim=1)
        return self.net(x)  # (B, features)


class FeatureGP(gpytorch.models.ExactGP):
    """Exact GP on deep features: linear mean (the prediction with no task data) + Matern-5/2 kernel."""

    def __init__(self, features: int, likelihood: gpytorch.likelihoods.GaussianLikelihood):
        super().__init__(None, None, likelihood)
        self.mean_module = gpytorch.means.LinearMean(features)
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=features))

    def forward(self, z: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))

    def clear_data(self) -> None:
        """Forget the conditioning data: predictions become the prior."""
        self.train_inputs = None
        self.train_targets = None
        self.prediction_strategy = None


class PerformanceModel(nn.Module):
    """Feature extractor + GP + Gaussian likelihood, one state dict."""

    def __init__(self, config_width: int, meta_width: int, *, hidden: int, features: int,
                 curve_channels: int):
        super().__init__()
        self.extractor = FeatureExtractor(config_width, meta_width, hidden=hidden, features=features,
                                          curve_channels=curve_channels)
        # The likelihood is reached as ``gp.likelihood``: registering it twice would duplicate its weights.
        self.gp = FeatureGP(features, gpytorch.likelihoods.GaussianLikelihood())


class CostModel(nn.Module):
    """Normalised log seconds of one budget step from (config, budget, meta-features)."""

    def __init__(self, config_width: int, meta_width: int, *, hidden: int):
        super().__init__()
        self.net = mlp([config_width + 1 + meta_width, hidden, hidden, 1])

    def forward(self, config: torch.Tensor, budget: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([config, budget[:, None], meta], dim=1)).squeeze(1)  # (B,)
