"""Reference baselines: the open-sci-ref dense transformer recipes and the compute axis.

Every run can be placed on the compute axis ``C = 6 * N * D`` (N parameters, D training tokens)
next to these references. ``N`` follows open-sci-ref's formula for its GPT-NeoX-tokenized models:
``N = 50432 * h + L * (4 * h^2 + 3 * h * ffn)`` (embedding, then attention and a gated MLP per
layer; norms and biases left out).
"""

from efficient_search.reference.compare import (
    Trend,
    compute_axis_table,
    fit_trend,
    reference_points,
    reference_trend,
    save_compute_plot,
)
from efficient_search.reference.presets import preset_spec
from efficient_search.reference.recipes import (
    OPEN_SCI_REF,
    OPEN_SCI_REF_VOCAB,
    Recipe,
    compute_flops,
    get_recipe,
    open_sci_ref_parameters,
)

__all__ = ["OPEN_SCI_REF", "OPEN_SCI_REF_VOCAB", "Recipe", "Trend", "compute_axis_table", "compute_flops",
           "fit_trend", "get_recipe", "open_sci_ref_parameters", "preset_spec", "reference_points",
           "reference_trend", "save_compute_plot"]
