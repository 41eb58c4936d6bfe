"""Keep secrets out of what the package writes: the store, its metadata and printed logs.

Two rules, applied by :func:`redact` to nested dicts, lists and strings:

- the value of a key whose name looks secret (``api_key``, ``hf_token``, ``password``,
  ``AWS_SECRET_ACCESS_KEY``...) is replaced by ``<redacted>``;
- any text equal to, or containing, the value of an environment variable whose name looks secret
  (``RAY_AUTH_TOKEN``, ``HF_TOKEN``, ``WANDB_API_KEY``...) has that value replaced.

Names are split into words (``_``, ``-``, ``.``, ``/`` and camelCase), so ``max_tokens``,
``fidelity/tokens`` and ``tokenizer`` are not secret, while ``token``, ``auth_token`` and
``apiKey`` are. Tokenizer special tokens (``pad_token``, ``eos_token``...) are not secret.

Example::

    redact({"lr": 0.1, "api_key": "abc"})     # {'lr': 0.1, 'api_key': '<redacted>'}
"""

from __future__ import annotations

import functools
import numbers
import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"

#: A name holding one of these words looks secret.
SECRET_WORDS = frozenset({"token", "secret", "secrets", "password", "passwd", "passphrase",
                          "credential", "credentials", "auth", "authorization", "apikey", "accesskey"})
#: ... and so does one holding one of these pairs of adjacent words.
SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")})
#: Tokenizer settings whose values are vocabulary entries, not credentials.
TOKENIZER_TOKENS = frozenset({"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "start", "end"})
#: Environment variables with these last words configure auth rather than hold a secret.
SETTING_WORDS = frozenset({"mode", "path", "file", "dir", "type", "enabled", "url", "host", "port"})
#: Environment values shorter than this are too common to hunt for in text ("1", "true", "token").
MIN_SECRET_LENGTH = 8


@functools.lru_cache(maxsize=4096)
def _words(name: str) -> tuple[str, ...]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return tuple(w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a key or environment variable called ``name`` looks like it holds a secret."""
    words = _words(name)
    for i, word in enumerate(words):
        if word in SECRET_WORDS and not (word == "token" and i > 0 and words[i - 1] in TOKENIZER_TOKENS):
            return True
        if i > 0 and (words[i - 1], word) in SECRET_PAIRS:
            return True
    return False


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables whose names look secret, longest first."""
    environ = os.environ if environ is None else environ
    values = {
        value.strip()
        for name, value in environ.items()
        if is_secret_name(name) and _words(name)[-1] not in SETTING_WORDS
        and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every environment secret in it replaced by ``<redacted>``."""
    for secret in environment_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of ``value`` (nested dicts, lists, tuples, strings) with secrets replaced.

    Under a secret-looking key, strings and containers become ``<redacted>``; numbers, booleans and
    None stay (a ``token_budget`` of 1000 is no credential). Other objects are returned as they are.
    """
    secrets = environment_secrets() if secrets is None else secrets
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {key: REDACTED if isinstance(key, str) and is_secret_name(key) and _holds_text(item)
                else redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item, secrets) for item in value)
    return value


def _holds_text(value: Any) -> bool:
    return not (value is None or isinstance(value, numbers.Number))
