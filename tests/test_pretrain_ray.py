"""Distillation pretraining on Ray Train workers (DDP, DeepSpeed ZeRO-2; gloo on CPU), paused and resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from transformers import AutoConfig

import efficient_search as es
from efficient_search.search_spaces.subnetwork import subnetwork_from_config
from efficient_search.subnetwork import SuperDims, count_parameters
from efficient_search.tasks.supernets import resolve_supernet

pytestmark = pytest.mark.usefixtures("ray_session")


class PauseOnce(FIFOScheduler):
    """Pauses every trial at its first result; FIFO then resumes it from its checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: set[str] = set()
        self.resumed: set[str] = set()

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        trial = super().choose_trial_to_run(tune_controller)
        if trial is not None and trial.status == Trial.PAUSED:
            self.resumed.add(trial.trial_id)
        return trial

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if trial.trial_id not in self.paused:
            self.paused.add(trial.trial_id)
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE


def spec(tmp_path: Path, name: str, strategy: str, scheduler: Any = "fifo") -> dict[str, Any]:
    resources: dict[str, Any] = {"num_workers": 2, "cpus_per_worker": 1, "strategy": strategy}
    if strategy == "deepspeed":
        resources["deepspeed_config"] = {"zero_optimization": {"stage": 2}}
    return {
        "name": name, "task": "pretrain",
        "task_options": {"init": "first-k", "distill": "online", "temperature": 2.0,
                         "student": {"n_layer": 2, "n_embd": 64, "intermediate_size": 128},
                         "max_tokens": 32768, "reports": 4, "batch_size": 4, "eval_sequences": 8},
        "search_space": {"lr": 0.003}, "num_samples": 1, "scheduler": scheduler,
        "resources": resources, "store": str(tmp_path / "store"), "verbose": 0,
    }


def curve(result: es.RunResult) -> pd.DataFrame:
    rows = result.results()
    return rows[rows["status"] == "RUNNING"].sort_values("iteration")


def check_paused_and_resumed(tmp_path: Path, name: str, result: es.RunResult, pauser: PauseOnce) -> None:
    assert not result.grid.errors
    assert len(pauser.paused) == 1 and pauser.resumed == pauser.paused, "paused once, then resumed"
    rows = curve(result)
    assert rows["iteration"].tolist() == [1, 2, 3, 4], "every result lands once, none skipped by the pause"
    assert rows["fidelity.tokens"].tolist() == [8192, 16384, 24576, 32768]
    # The kept checkpoints are stamped with the fit that wrote them.
    markers = list((tmp_path / "store" / "_ray" / "_train" / name).glob("*/checkpoint_*/.fit_id"))
    assert markers and all(len(marker.read_text()) == 32 for marker in markers)
    assert rows["metric.val_loss"].iloc[-1] < rows["metric.init_val_loss"].iloc[0]


@pytest.mark.slow
def test_ddp_distillation_resumes_after_a_pause(tmp_path: Path) -> None:
    pauser = PauseOnce()
    result = es.run(spec(tmp_path, "pretrain-ddp-paused", "ddp", pauser))
    check_paused_and_resumed(tmp_path, "pretrain-ddp-paused", result, pauser)
    assert (curve(result)["metric.distill"] == "online").all()
    assert "ddp workers=2" in curve(result)["hardware"].iloc[0]


@pytest.mark.slow
def test_deepspeed_zero2_paused_run_matches_an_uninterrupted_ddp_run(tmp_path: Path) -> None:
    pauser = PauseOnce()
    paused = es.run(spec(tmp_path, "pretrain-zero2-paused", "deepspeed", pauser))
    check_paused_and_resumed(tmp_path, "pretrain-zero2-paused", paused, pauser)
    assert "deepspeed workers=2" in curve(paused)["hardware"].iloc[0]
    plain = es.run(spec(tmp_path, "pretrain-ddp", "ddp"))
    # ZeRO-2 shards the optimiser state, the resumed run reloads it: neither changes the maths.
    assert curve(paused)["metric.val_loss"].tolist() == pytest.approx(
        curve(plain)["metric.val_loss"].tolist(), abs=1e-4)


@pytest.mark.slow
def test_deepspeed_zero3_in_bf16_with_accumulation_trains_and_checkpoints_every_shard(tmp_path: Path) -> None:
    run = spec(tmp_path, "pretrain-zero3", "deepspeed")
    run["resources"]["deepspeed_config"] = {"zero_optimization": {"stage": 3}}
    run["task_options"].update(precision="bf16", grad_accum=2, max_tokens=16384, reports=2)
    result = es.run(run)
    assert not result.grid.errors
    rows = curve(result)
    assert rows["fidelity.tokens"].tolist() == [8192, 16384]  # 2 workers x 4 x 2 micro-batches x 128 tokens
    assert rows["metric.val_loss"].iloc[-1] < rows["metric.init_val_loss"].iloc[0]
    # Partitioned parameters are counted at full size, and every rank wrote its shard.
    dims = SuperDims.from_config(AutoConfig.from_pretrained(resolve_supernet("tiny-shakespeare")))
    student = subnetwork_from_config(run["task_options"]["student"], dims)
    assert rows["metric.params"].iloc[0] == count_parameters(dims, student)
    folders = (tmp_path / "store" / "_ray" / "_train" / "pretrain-zero3").glob("*/checkpoint_*")
    latest = sorted(folder for folder in folders if folder.is_dir())[-1]
    expected = [f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)]
    assert sorted(p.name for p in (latest / "state").glob("*optim_states.pt")) == expected
    assert not (latest / "model").exists(), "no save_pretrained copy of partitioned weights"
