"""Ray Tune's saved experiment state, made safe to restore.

Ray 2.x saves the controller's pending scheduler decisions with the experiment state
(``_cached_trial_decisions``: the decision waiting for a trial's save; ``_queued_trial_decisions``)
and restores them with the trials. A trial whose driver died while it was saving for a PAUSE then
carries that stale PAUSE into the resumed run, where it lands after the trial's first save: the
trial is paused although its scheduler let it continue, and a scheduler that resumes only the
trials it paused itself (``layer_freezing``) never picks it up again — the search hangs. The
restored trials start over from their checkpoints and the schedulers decide afresh, so the saved
decisions are dropped before ``Tuner.restore`` reads them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATE_GLOB = "experiment_state-*.json"
DECISION_KEYS = ("_cached_trial_decisions", "_queued_trial_decisions")


def drop_pending_decisions(experiment_path: str | os.PathLike[str]) -> int:
    """Empty the pending decisions in every experiment state file of a local experiment folder
    (atomically per file); returns how many decisions were dropped. Remote storage is left as is."""
    folder = Path(experiment_path)
    if "://" in str(experiment_path) or not folder.is_dir():
        return 0
    dropped = 0
    for path in sorted(folder.glob(STATE_GLOB)):
        state = json.loads(path.read_text())
        runner = state.get("runner_data")
        if not isinstance(runner, dict):
            continue
        pending = sum(len(runner.get(key) or {}) for key in DECISION_KEYS)
        if not pending:
            continue
        for key in DECISION_KEYS:
            if key in runner:
                runner[key] = {}
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(state))
        os.replace(partial, path)
        dropped += pending
    return dropped
