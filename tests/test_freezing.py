"""Layer freezing on the three model families: our Sequential CNN, torchvision ResNet, HF."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from efficient_search.tasks.digits import DigitsResNet
from efficient_search.train.freezing import freeze_layers, layer_units, max_fidelity


def gpt2() -> nn.Module:
    config = GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config)


def bert() -> nn.Module:
    config = BertConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=2,
                        intermediate_size=64, vocab_size=64, max_position_embeddings=32,
                        num_labels=3)
    return BertForSequenceClassification(config)


def tokens() -> torch.Tensor:
    return torch.randint(0, 64, (2, 16))


def loss_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    logits = out.logits if hasattr(out, "logits") else out
    return logits.float().pow(2).mean()


FAMILIES: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor], int]] = {
    # name: (model factory, input factory, expected number of units)
    "sequential-cnn": (lambda: DigitsResNet(depth=3, width=8), lambda: torch.randn(4, 1, 8, 8), 5),
    "torchvision-resnet18": (lambda: torchvision.models.resnet18(num_classes=5),
                             lambda: torch.randn(2, 3, 32, 32), 10),
    "hf-gpt2": (gpt2, tokens, 5),
    "hf-bert": (bert, tokens, 5),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor, int]:
    torch.manual_seed(0)
    make_model, make_input, units = FAMILIES[request.param]
    return make_model(), make_input(), units


def test_units_run_input_to_output(family) -> None:
    model, _, expected = family
    units = layer_units(model)
    assert len(units) == max_fidelity(model) == expected
    covered = {id(p) for unit in units for p in unit.parameters()}
    assert covered == {id(p) for p in model.parameters()}, "every parameter belongs to a unit"


@pytest.mark.parametrize("z", [1, 2, "all"])
def test_only_the_top_units_receive_gradients(family, z) -> None:
    model, x, total = family
    z = total if z == "all" else z
    trainable = freeze_layers(model, z)
    trainable_ids = {id(p) for p in trainable}
    units = layer_units(model)
    top = {id(p) for unit in units[total - z :] for p in unit.parameters()}
    assert trainable_ids == top
    loss_of(model, x).backward()
    for param in model.parameters():
        got_grad = param.grad is not None and bool(param.grad.abs().sum() > 0)
        if id(param) in trainable_ids:
            assert param.requires_grad
        else:
            assert not param.requires_grad and param.grad is None
        if got_grad:
            assert id(param) in trainable_ids


def test_no_graph_is_kept_for_the_frozen_prefix(family) -> None:
    model, x, total = family
    freeze_layers(model, 1)
    units = layer_units(model)
    outputs: list[object] = []
    last_frozen = units[total - 2]
    module = last_frozen.parts[0] if hasattr(last_frozen, "parts") else last_frozen
    handle = module.register_forward_hook(lambda m, i, o: outputs.append(o))
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_of(model, x)
    handle.remove()
    out = outputs[-1]
    out = out[0] if isinstance(out, tuple) else out
    assert not out.requires_grad and out.grad_fn is None
    frozen_saved = sum(saved)

    freeze_layers(model, total)
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_of(model, x)
    assert loss.requires_grad
    assert frozen_saved < sum(saved) / 2, "freezing all but the head should save most activations"


def test_optimizer_gets_only_trainable_parameters() -> None:
    model = DigitsResNet(depth=2, width=8)
    params = freeze_layers(model, 2)
    optimizer = torch.optim.AdamW(params, lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss_of(model, torch.randn(4, 1, 8, 8)).backward()
    optimizer.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
    trainable = {id(p) for p in params}
    assert changed == [id(p) in trainable for p in model.parameters()]


def test_tied_embeddings_stay_trainable_with_the_head() -> None:
    model = gpt2()
    trainable = {id(p) for p in freeze_layers(model, 1)}
    assert id(model.lm_head.weight) in trainable  # the head's weight is the input embedding
    assert id(model.transformer.wpe.weight) not in trainable


@pytest.mark.parametrize(("z", "error", "pattern"), [
    (0, ValueError, r"1 <= trainable_layers <= 4 .* but got 0"),
    (5, ValueError, r"but got 5"),
    (2.0, TypeError, r"must be an integer, but got 2\.0"),
])
def test_bad_trainable_layers(z, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        freeze_layers(DigitsResNet(depth=2, width=8), z)


def test_models_without_units_are_explained() -> None:
    with pytest.raises(ValueError, match="Cannot find layer units in Linear"):
        layer_units(nn.Linear(3, 3))
