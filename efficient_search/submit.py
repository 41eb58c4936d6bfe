"""Submit a spec to a Ray cluster through the job API (what ``ray job submit`` does)."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from efficient_search.redaction import MIN_SECRET_LENGTH, environment_secrets, is_secret_name, redact_text

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def auth_headers() -> dict[str, str]:
    """The bearer-token header of a Ray cluster with token authentication (Ray's default).

    The token is read where Ray keeps it: ``RAY_AUTH_TOKEN``, the file in
    ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``. ``RAY_AUTH_MODE=disabled`` sends none.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def submit(spec_path: str | os.PathLike[str], *, address: str, working_dir: str = ".",
           runtime_env: Mapping[str, Any] | None = None, wait: bool = True,
           timeout_s: float = 3600.0, poll_s: float = 2.0) -> tuple[str, str]:
    """Submit ``efficient-search run SPEC`` as a Ray job; returns (job id, final status).

    ``working_dir`` is uploaded as the job's working directory, so ``spec_path`` must lie
    inside it. With ``wait`` the job's logs are followed until it ends; what is printed has the
    values of secret environment variables (``RAY_AUTH_TOKEN``, ``HF_TOKEN``...) replaced by
    ``<redacted>`` (see :mod:`efficient_search.redaction`).
    """
    from ray.job_submission import JobSubmissionClient

    from efficient_search.spec import ExperimentSpec

    spec_file = Path(spec_path).resolve()
    root = Path(working_dir).resolve()
    ExperimentSpec.from_file(spec_file)  # fail here, not on the cluster
    try:
        relative = spec_file.relative_to(root)
    except ValueError:
        raise ValueError(
            f"Spec file {str(spec_path)!r} is outside `working_dir` {working_dir!r}, so the "
            "job could not read it. Fix: pass --working-dir to a folder that holds the spec."
        ) from None
    env = {"working_dir": str(root), **dict(runtime_env or {})}
    headers = auth_headers()
    secrets = printed_secrets(headers, env)
    client = JobSubmissionClient(address, headers=headers)
    job_id = client.submit_job(
        entrypoint=f"efficient-search run {shlex.quote(relative.as_posix())}", runtime_env=env
    )
    print(redact_text(f"submitted job {job_id} to {address}", secrets), flush=True)
    if not wait:
        return job_id, str(client.get_job_status(job_id))
    deadline = time.monotonic() + timeout_s
    shown = 0
    while True:
        status = str(client.get_job_status(job_id)).split(".")[-1]
        # The job's own output may echo a token it was given: print it redacted, whole lines
        # only until the end, so that no secret is cut in two between polls.
        logs = redact_text(client.get_job_logs(job_id), secrets)
        end = len(logs) if status in TERMINAL else logs.rfind("\n") + 1
        print(logs[shown:end], end="", flush=True)
        shown = max(shown, end)
        if status in TERMINAL:
            return job_id, status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def printed_secrets(headers: Mapping[str, str], runtime_env: Mapping[str, Any]) -> list[str]:
    """What :func:`submit` must never print: environment secrets, the auth token (it may come from
    a file) and secret-looking ``env_vars`` handed to the job."""
    token = headers.get("Authorization", "").removeprefix("Bearer ").strip()
    env_vars = runtime_env.get("env_vars") or {}
    extra = [token, *(str(v) for k, v in env_vars.items() if is_secret_name(str(k)))]
    return sorted({*environment_secrets(), *(s for s in extra if len(s) >= MIN_SECRET_LENGTH)},
                  key=len, reverse=True)
