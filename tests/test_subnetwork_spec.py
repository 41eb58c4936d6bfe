"""SubNetwork, SuperDims and the analytic counts: plain data and arithmetic, no models built."""

from __future__ import annotations

import json
from typing import Any

import pytest
from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

from efficient_search.subnetwork import (
    SubNetwork,
    SuperDims,
    count_flops,
    count_parameters,
    head_dims,
)

# SmolLM2-135M: 30 layers, 576 wide, 9 heads / 3 KV heads of 64, MLP 1536, tied embeddings.
SMOLLM2 = SuperDims(arch="llama", n_layer=30, n_embd=576, intermediate_size=1536, n_heads=9, n_query_groups=3,
                    head_size=64, vocab_size=49152, tied_embeddings=True, rope_type="default")
GPT2 = SuperDims(arch="gpt2", n_layer=4, n_embd=32, intermediate_size=64, n_heads=4, n_query_groups=4,
                 head_size=8, vocab_size=100, tied_embeddings=True, n_positions=16, attention_bias=True,
                 mlp_bias=True)
# Pythia-like: 16-wide heads, a quarter of them rotary (4 dims = 2 pairs).
NEOX = SuperDims(arch="gpt_neox", n_layer=4, n_embd=64, intermediate_size=128, n_heads=4, n_query_groups=4,
                 head_size=16, vocab_size=100, tied_embeddings=False, attention_bias=True, mlp_bias=True,
                 rope_type="default", partial_rotary_factor=0.25)


def test_smollm2_parameter_count_matches_the_published_one() -> None:
    assert count_parameters(SMOLLM2, SubNetwork()) == 134_515_008


def test_count_is_the_layer_formula() -> None:
    sub = SubNetwork(layer_indices=2, n_embd=16, intermediate_size=(10, 20), n_heads=2, head_size=8)
    e, v, p = 16, 100, 16
    layer = [e * 3 * 16 + 3 * 16 + 16 * e + e + e * i + i + i * e + e + 4 * e for i in (10, 20)]
    assert count_parameters(GPT2, sub) == v * e + p * e + sum(layer) + 2 * e

    t = 7
    non_embedding = sum(layer) + 2 * e
    attention = 4 * t * t * 2 * (2 * 8)
    assert count_flops(GPT2, sub, t) == 2 * non_embedding * t + attention + 2 * t * e * v


def test_count_accepts_a_resolved_subnetwork_and_untied_heads_count_twice() -> None:
    sub = SubNetwork(n_embd=32, n_heads=2)
    assert count_parameters(NEOX, sub) == count_parameters(NEOX, sub.resolve(NEOX))
    tied = SuperDims.from_dict({**NEOX.to_dict(), "tied_embeddings": True})
    assert count_parameters(NEOX, sub) - count_parameters(tied, sub) == 100 * 32


def test_count_flops_rejects_a_bad_sequence_length() -> None:
    with pytest.raises(ValueError, match="seq_len"):
        count_flops(GPT2, SubNetwork(), 0)


def test_subnetwork_round_trips_through_json() -> None:
    sub = SubNetwork(layer_indices=[3, 1], n_embd=384, intermediate_size=(100, 200), n_heads=[6, 3],
                     n_query_groups=3, head_size=32)
    assert sub.layer_indices == (3, 1) and sub.n_heads == (6, 3)  # lists become tuples
    assert SubNetwork.from_dict(json.loads(json.dumps(sub.to_dict()))) == sub
    assert SubNetwork.from_dict(SubNetwork(layer_indices=4).to_dict()) == SubNetwork(layer_indices=4)
    with pytest.raises(ValueError, match="Unknown SubNetwork fields"):
        SubNetwork.from_dict({"n_layers": 3})


def test_superdims_from_configs_and_json() -> None:
    gpt2 = SuperDims.from_config(GPT2Config(vocab_size=100, n_embd=32, n_layer=4, n_head=4, n_positions=16,
                                            bos_token_id=0, eos_token_id=0))
    assert (gpt2.intermediate_size, gpt2.head_size, gpt2.n_query_groups) == (128, 8, 4)
    assert gpt2.tied_embeddings
    neox = SuperDims.from_config(GPTNeoXConfig(vocab_size=100, hidden_size=64, num_hidden_layers=4,
                                               num_attention_heads=4, intermediate_size=128))
    assert (neox.head_size, neox.partial_rotary_factor, neox.rotary_dims(16)) == (16, 0.25, 4)
    llama = SuperDims.from_config(LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True))
    assert llama == SMOLLM2
    assert SuperDims.from_dict(json.loads(json.dumps(llama.to_dict()))) == llama


def test_unsupported_model_type_lists_the_supported_ones() -> None:
    class BertLikeConfig:
        model_type = "bert"

    with pytest.raises(ValueError, match="'gpt2'.*'gpt_neox'.*'llama'.*model_type='bert'"):
        SuperDims.from_config(BertLikeConfig())


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"layer_indices": True}, TypeError, "`layer_indices` must be an int, but got True"),
    ({"n_embd": 3.0}, TypeError, r"`n_embd` must be an int, but got 3.0 \(float\)"),
    ({"n_heads": (2, 2.5)}, TypeError, r"`n_heads\[1\]` must be an int"),
    ({"intermediate_size": "8"}, TypeError, "`intermediate_size` must be an int"),
    ({"head_size": False}, TypeError, "`head_size` must be an int"),
    ({"n_embd": 0}, ValueError, "`n_embd` must be positive, but got n_embd=0"),
    ({"n_heads": (4, -1)}, ValueError, r"`n_heads` must be positive, but got n_heads=\(4, -1\)"),
    ({"layer_indices": 0}, ValueError, "`layer_indices` must be positive"),
    ({"layer_indices": ()}, ValueError, "`layer_indices` must not be empty"),
    ({"layer_indices": (1, 4, 1)}, ValueError, r"must not repeat a layer, but got \[1\]"),
    ({"layer_indices": (-1, 2)}, ValueError, r"must be non-negative, but got \[-1\]"),
])
def test_subnetwork_rejects_bad_values(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SubNetwork(**kwargs)


@pytest.mark.parametrize(("dims", "kwargs", "match"), [
    (SMOLLM2, {"layer_indices": 31}, "`layer_indices` must be at most the super-network's 30 layers"),
    (SMOLLM2, {"layer_indices": (0, 30, 31)}, r"must lie in \[0, 29\].*got \[30, 31\]"),
    (SMOLLM2, {"n_embd": 600}, "at most the super-network's 576 channels, but got n_embd=600"),
    (SMOLLM2, {"intermediate_size": 2000}, "`intermediate_size` must be at most the super-network's 1536"),
    (SMOLLM2, {"n_heads": 12}, "`n_heads` must be at most the super-network's 9 query heads"),
    (SMOLLM2, {"n_query_groups": 4}, "`n_query_groups` must be at most the super-network's 3"),
    (SMOLLM2, {"head_size": 80}, "`head_size` must be at most the super-network's 64"),
    (SMOLLM2, {"n_heads": 4}, r"multiple of `n_query_groups`.*n_heads=4 and n_query_groups=3.*of \[1, 2\]"),
    (SMOLLM2, {"n_heads": 8, "n_query_groups": 2}, "needs 4 query heads per group, but the super-network"),
    (SMOLLM2, {"layer_indices": 2, "intermediate_size": (10, 20, 30)}, "needs 2 values, but got 3"),
    (SMOLLM2, {"n_heads": (9, 6)}, "`n_heads` lists one value per kept layer, so it needs 30 values"),
    (SMOLLM2, {"head_size": 33}, r"would split rotary pairs.*= 33 dimensions.*Choose head_size in \[2, 4,"),
    (NEOX, {"n_embd": 48, "n_heads": 4, "head_size": 12},
     r"int\(head_size \* 0.25\) = 3.*\[1, 2, 3, 8, 9, 10, 11, 16\]"),
    (GPT2, {"n_heads": 2}, "n_heads \\* head_size must equal n_embd.*n_heads=2 and head_size=8 .product 16. "
                           "with n_embd=32. Set n_embd=16"),
    (GPT2, {"n_embd": 16}, "n_heads \\* head_size must equal n_embd"),
    (NEOX, {"head_size": 8}, "gpt_neox computes the head size as n_embd / n_heads"),
    (GPT2, {"n_heads": (4, 2, 4, 4)}, "per-layer head counts cannot be built"),
    (GPT2, {"n_query_groups": 2}, "gpt2 has no grouped-query attention: `n_query_groups` must equal n_heads"),
    (SuperDims.from_dict({**SMOLLM2.to_dict(), "rope_type": "yarn"}), {"head_size": 32},
     "rope_type='yarn'. Leave head_size at None"),
])
def test_resolve_rejects_what_cannot_be_built(dims: SuperDims, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SubNetwork(**kwargs).resolve(dims)


def test_resolve_fills_defaults_and_orders_layers() -> None:
    r = SubNetwork(layer_indices=(7, 2, 5), intermediate_size=(1, 2, 3), n_heads=6).resolve(SMOLLM2)
    assert r.layer_indices == (2, 5, 7) and r.intermediate_sizes == (1, 2, 3)
    assert (r.n_embd, r.n_heads, r.n_query_groups, r.head_size) == (576, (6, 6, 6), 3, 64)
    assert not r.is_stock  # per-layer MLP widths
    ranking = [9, 4, *(i for i in range(30) if i not in (4, 9))]
    assert SubNetwork(layer_indices=2).resolve(SMOLLM2, layer_ranking=ranking).layer_indices == (4, 9)
    with pytest.raises(ValueError, match="`layer_ranking` must order all 30 layers once"):
        SubNetwork(layer_indices=2).resolve(SMOLLM2, layer_ranking=[9, 4, 1])
    assert SubNetwork(n_heads=3, intermediate_size=(7,) * 30).resolve(SMOLLM2).is_stock
    assert not SubNetwork(n_embd=500).resolve(SMOLLM2).is_stock  # LlamaConfig wants n_embd % n_heads == 0
    assert not SubNetwork(n_heads=(6,) * 29 + (3,)).resolve(SMOLLM2).is_stock


def test_multi_head_superdims_keep_one_head_per_group_by_default() -> None:
    mha = SuperDims.from_dict({**SMOLLM2.to_dict(), "n_query_groups": 9})
    assert SubNetwork(n_heads=3).resolve(mha).n_query_groups == 3
    assert SubNetwork(n_embd=16, n_heads=2).resolve(GPT2).n_query_groups == 2


def test_head_dims_keep_rotary_pairs() -> None:
    assert head_dims(SMOLLM2, 64) == tuple(range(64))
    assert head_dims(SMOLLM2, 4) == (0, 1, 32, 33)
    assert head_dims(NEOX, 8) == (0, 2, 4, 5, 6, 7, 8, 9)  # 1 pair of 2, then 6 of the 12 non-rotary dims
    assert head_dims(GPT2, 3) == (0, 1, 2)
