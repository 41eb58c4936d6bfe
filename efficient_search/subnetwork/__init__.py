"""Sub-networks of Hugging Face causal LMs (GPT-2, GPT-NeoX/Pythia, Llama with grouped-query attention).

Describe a sub-network by the sizes it keeps, count its parameters and FLOPs by arithmetic, rank the
super-network's units by importance, and extract the sub-network as a standalone model::

    from efficient_search.subnetwork import (SubNetwork, SuperDims, compute_importance, count_parameters,
                                             extract_subnetwork)

    dims = SuperDims.from_config(model.config)
    sub = SubNetwork(layer_indices=15, n_embd=384, intermediate_size=768, n_heads=6, n_query_groups=3)
    count_parameters(dims, sub)                                 # pure arithmetic
    small = extract_subnetwork(model, sub, order=compute_importance(model, input_ids))

`spec`, `dims`, `count`, `importance` and `selection` are plain Python (no torch at run time); transformers
is imported only where a model is built or loaded.
"""

from efficient_search.subnetwork.count import count_flops, count_parameters
from efficient_search.subnetwork.dims import SUPPORTED_ARCHS, SuperDims
from efficient_search.subnetwork.extract import extract_subnetwork
from efficient_search.subnetwork.importance import Importance, rank
from efficient_search.subnetwork.layout import load_subnetwork
from efficient_search.subnetwork.measure import compute_importance
from efficient_search.subnetwork.reference import masked_copy, sliced_forward
from efficient_search.subnetwork.selection import LayerSelection, Selection, head_dims, select
from efficient_search.subnetwork.spec import ResolvedSubNetwork, SubNetwork

__all__ = [
    "SUPPORTED_ARCHS",
    "Importance",
    "LayerSelection",
    "ResolvedSubNetwork",
    "Selection",
    "SubNetwork",
    "SuperDims",
    "compute_importance",
    "count_flops",
    "count_parameters",
    "extract_subnetwork",
    "head_dims",
    "load_subnetwork",
    "masked_copy",
    "rank",
    "select",
    "sliced_forward",
]
