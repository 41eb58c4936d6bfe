"""Parameter and FLOP counts of a sub-network, by arithmetic on its sizes (no torch, fast).

Example::

    dims = SuperDims.from_config(model.config)
    count_parameters(dims, SubNetwork(n_embd=256))   # == sum(p.numel() for p in extracted.parameters())
"""

from __future__ import annotations

from efficient_search.subnetwork.dims import SuperDims
from efficient_search.subnetwork.spec import ResolvedSubNetwork, SubNetwork
from efficient_search.validate import is_int


def _as_resolved(dims: SuperDims, subnetwork: SubNetwork | ResolvedSubNetwork) -> ResolvedSubNetwork:
    return subnetwork if isinstance(subnetwork, ResolvedSubNetwork) else subnetwork.resolve(dims)


def _layer_parameters(dims: SuperDims, n_embd: int, intermediate: int, heads: int, groups: int,
                      head_size: int) -> int:
    attn_width, kv_width = heads * head_size, groups * head_size
    attention = n_embd * (attn_width + 2 * kv_width) + attn_width * n_embd
    if dims.attention_bias:
        attention += attn_width + 2 * kv_width + n_embd
    up_matrices = 2 if dims.gated_mlp else 1
    mlp = (up_matrices + 1) * n_embd * intermediate
    if dims.mlp_bias:
        mlp += up_matrices * intermediate + n_embd
    return attention + mlp + 2 * dims.norm_params_per_channel * n_embd


def _non_embedding_parameters(dims: SuperDims, r: ResolvedSubNetwork) -> int:
    layers = sum(
        _layer_parameters(dims, r.n_embd, inter, heads, r.n_query_groups, r.head_size)
        for inter, heads in zip(r.intermediate_sizes, r.n_heads, strict=True)
    )
    return layers + dims.norm_params_per_channel * r.n_embd  # + final norm


def count_parameters(dims: SuperDims, subnetwork: SubNetwork | ResolvedSubNetwork) -> int:
    """Parameters of the extracted sub-network; tied token embedding and LM head count once."""
    r = _as_resolved(dims, subnetwork)
    embeddings = (dims.vocab_size + dims.n_positions) * r.n_embd
    lm_head = 0 if dims.tied_embeddings else dims.vocab_size * r.n_embd
    return embeddings + _non_embedding_parameters(dims, r) + lm_head


def count_flops(dims: SuperDims, subnetwork: SubNetwork | ResolvedSubNetwork, seq_len: int) -> int:
    """Forward FLOPs for one sequence of `seq_len` tokens (a multiply-add counts 2).

    ``2 * N * T + 4 * T**2 * sum_l(n_heads_l * head_size) + 2 * T * n_embd * vocab_size``, where N counts the
    non-embedding parameters (weights, biases and norms: each used once per token), the middle term the
    attention scores Q K^T and their product with V over the full T x T matrix (dense kernels compute it
    whole, causal or not), and the last term the LM head. Embedding look-ups cost nothing.
    """
    if not is_int(seq_len) or seq_len < 1:
        raise ValueError(f"`seq_len` must be a positive int, but got seq_len={seq_len!r}.")
    r = _as_resolved(dims, subnetwork)
    attention = 4 * seq_len * seq_len * sum(h * r.head_size for h in r.n_heads)
    lm_head = 2 * seq_len * r.n_embd * dims.vocab_size
    return 2 * _non_embedding_parameters(dims, r) * seq_len + attention + lm_head
