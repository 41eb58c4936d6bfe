"""Ray Tune's saved experiment state, made safe to restore.

Ray 2.x saves the controller's pending scheduler decisions with the experiment state
(``_cached_trial_decisions``: the decision waiting for a trial's save; ``_queued_trial_decisions``)
and restores them with the trials. A trial whose driver died while it was saving for a PAUSE then
carries that stale PAUSE into the resumed run, where it lands after the trial's first save: the
trial is paused although its scheduler let it continue, and a scheduler that resumes only the
trials it paused itself (``layer_freezing``) never picks it up again — the search hangs. Our
schedulers put a restored trial that had reached its pause point back to waiting themselves, so
saved PAUSE decisions are dropped before ``Tuner.restore`` reads them; STOP decisions stay (the
saved scheduler state already counts those trials as stopped).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from efficient_search.durable import atomic_write
from efficient_search.ray_compat import EXPERIMENT_STATE_GLOB as STATE_GLOB
from efficient_search.ray_compat import PAUSE_DECISION as PAUSE
from efficient_search.ray_compat import PENDING_DECISION_KEYS as DECISION_KEYS
from efficient_search.ray_compat import RUNNER_DATA_KEY


def drop_pending_pauses(experiment_path: str | os.PathLike[str]) -> int:
    """Remove pending PAUSE decisions from the experiment state file Ray restores (the newest by
    name, as Ray picks it) of a local experiment folder, atomically; returns how many were
    dropped. Remote storage is left as is."""
    folder = Path(experiment_path)
    if "://" in str(experiment_path) or not folder.is_dir():
        return 0
    files = sorted(folder.glob(STATE_GLOB), key=lambda p: p.name)
    if not files:
        return 0
    path = files[-1]
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Ray's experiment state {str(path)!r} is not readable JSON ({error}); the run was "
            "probably killed while writing it. Fix: move that file aside so that the previous "
            "snapshot is restored, or rerun the experiment under a new name."
        ) from error
    runner = state.get(RUNNER_DATA_KEY)
    if not isinstance(runner, dict):
        return 0
    dropped = 0
    for key in DECISION_KEYS:
        decisions = runner.get(key)
        if isinstance(decisions, dict):
            kept = {t: d for t, d in decisions.items() if d != PAUSE}
            dropped += len(decisions) - len(kept)
            runner[key] = kept
    if dropped:
        atomic_write(path, json.dumps(state))
    return dropped
