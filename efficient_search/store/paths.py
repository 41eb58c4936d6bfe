"""Paths built from names (experiments, trial ids) that cannot leave their root folder.

Experiment names and trial ids become folder names under the store root and Ray's storage path.
:func:`inside_root` joins them and refuses any name that would land elsewhere: ``..``, absolute
paths, path separators, NUL, and (for local paths) a symbolic link pointing out of the root.
"""

from __future__ import annotations

import os
import posixpath

FIX = "Fix: use a plain name of letters, digits, '_', '-' and '.', e.g. 'digits-asha-1'."


def is_uri(path: str) -> bool:
    """Whether ``path`` names a pyarrow filesystem URI (``s3://``, ``gs://``, ``file://``...)."""
    return "://" in path


def check_component(part: object, field: str) -> str:
    """``part`` if it is one plain path component; ValueError naming ``field`` otherwise."""
    if not isinstance(part, str):
        raise TypeError(f"`{field}` must be a string, but got {part!r} ({type(part).__name__}).")
    problem = None
    if not part:
        problem = "it is empty"
    elif "\x00" in part:
        problem = "it contains a NUL character"
    elif part.startswith(("/", "\\")) or os.path.isabs(part):
        problem = "it is an absolute path"
    elif "/" in part or "\\" in part:
        problem = "it contains a path separator"
    elif part in (".", ".."):
        problem = f"it is {part!r}"
    if problem is not None:
        raise ValueError(f"`{field}` {part!r} cannot name a folder inside its root: {problem}. {FIX}")
    return part


def inside_root(root: str, *parts: str, field: str, local: bool | None = None) -> str:
    """``root/part/...``, refused unless every part is one plain folder name and the result lies under
    ``root``.

    ``local`` (default: ``root`` is not a URI) also resolves symbolic links, so a link inside the root
    that points out of it is refused. URIs (and paths of a remote pyarrow filesystem) are checked on
    their normalised form. The result keeps ``root`` as given (nothing is resolved in it).

    Example::

        inside_root("results", "experiment=digits", field="experiment")   # 'results/experiment=digits'
        inside_root("results", "../etc", field="experiment")              # ValueError
    """
    for part in parts:
        check_component(part, field)
    local = not is_uri(root) if local is None else local
    joined = (root if root.endswith("/") else root + "/") + "/".join(parts) if parts else root
    if local:
        base = os.path.realpath(root)
        resolved = os.path.realpath(joined)
    else:
        prefix, sep, path = root.partition("://") if is_uri(root) else ("", "", root)
        base = posixpath.normpath(path or "/")
        resolved = posixpath.normpath(joined[len(prefix) + len(sep):])
    if resolved != base and not resolved.startswith(base.rstrip("/") + "/"):
        value = "/".join(parts)
        raise ValueError(
            f"`{field}` {value!r} leads to {resolved!r}, outside its root {root!r} (a symbolic link "
            "points out of it). Fix: remove the link, or choose another name."
        )
    return joined
