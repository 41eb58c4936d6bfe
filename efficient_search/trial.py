"""The Tune trial function: run a task's training loop for one configuration.

With ``resources.num_workers >= 1`` the trial builds and fits a Ray Train ``TorchTrainer``
(Train V2) whose workers run the loop and whose results reach Tune through
``TuneReportCallback``. With ``num_workers == 0`` the same loop runs inside the trial process,
which skips Train's start-up cost for tiny models.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ray import tune

from efficient_search.fidelity import is_restart, run_name
from efficient_search.spec import Resources
from efficient_search.store.paths import inside_root
from efficient_search.task_registry import Task, get_task
from efficient_search.train.session import InProcessSession, train_worker_session

#: The CPU share the Tune trial itself holds while its Train workers run (Ray refuses an empty
#: resource request, and the trial mostly waits on its workers).
TRIAL_DRIVER_CPUS = 0.01
#: Checkpoints kept per trial (Train and Tune): the latest resumes it, one more guards a torn write.
KEEP_CHECKPOINTS = 2


def train_worker_loop(loop_config: dict[str, Any]) -> None:
    """Entry point of every Ray Train worker."""
    task = as_task(loop_config["task"])
    session = train_worker_session(loop_config)
    task.train_loop(loop_config["params"], loop_config["options"], session, loop_config["seed"])


def as_task(task: Task | str) -> Task:
    """A task object, or the registered task of that name."""
    return task if isinstance(task, Task) else get_task(task)


def make_trainable(*, task: Task | str, options: Mapping[str, Any], resources: Resources, seed: int,
                   storage_path: str, experiment: str,
                   max_failures: int = 0) -> Callable[[dict[str, Any]], None]:
    """The function trainable of an experiment, with its resource request attached.

    ``task`` travels with the trainable (a name is looked up here, in the driver), so a task
    registered by the driver's own code runs in trial and Train worker processes that never
    imported that code (its loop must be picklable). ``max_failures`` retries of a Train worker
    group restart it from its latest checkpoint.
    """
    task = as_task(task)

    def run_trial(config: dict[str, Any]) -> None:
        checkpoint = None if is_restart(config) else tune.get_checkpoint()
        resume_dir = checkpoint.to_directory() if checkpoint and resources.num_workers == 0 else None
        loop_config: dict[str, Any] = {
            "task": task,
            "options": dict(options),
            "params": dict(config),
            "seed": seed,
            "strategy": resources.strategy,
            "deepspeed_config": resources.deepspeed_config,
            "resume_checkpoint": checkpoint,  # each worker fetches it: workers may sit on other nodes
            "fit_id": uuid.uuid4().hex,  # tells this fit's checkpoints from an earlier fit's
        }
        if resources.num_workers == 0:
            session = InProcessSession(resume_dir=resume_dir)  # the CPU: no torch until a loop uses it
            if resources.gpus_per_worker > 0:
                import torch

                session.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            task.train_loop(dict(config), dict(options), session, seed)
        else:
            fit_torch_trainer(loop_config, resources,
                              inside_root(storage_path, "_train", experiment, field="experiment"),
                              max_failures=max_failures)

    return tune.with_resources(run_trial, trial_request(resources))


def trial_request(resources: Resources) -> dict[str, float]:
    """What the Tune trial reserves; Train workers reserve their own placement group."""
    if resources.num_workers == 0:
        return {"CPU": max(resources.cpus_per_worker, TRIAL_DRIVER_CPUS),
                "GPU": resources.gpus_per_worker}
    return {"CPU": TRIAL_DRIVER_CPUS}


def cpus_per_trial(resources: Resources) -> float:
    """All CPUs one trial holds, driver and workers together."""
    workers = resources.num_workers * resources.cpus_per_worker
    return trial_request(resources)["CPU"] + workers


def fit_torch_trainer(loop_config: dict[str, Any], resources: Resources, storage_path: str,
                      max_failures: int = 0) -> None:
    """Fit a ``TorchTrainer`` named after the Tune trial; re-fitting the name resumes it.

    A worker group that fails (a worker or its node dies) is restarted up to ``max_failures``
    times; its workers resume from the latest checkpoint of this fit.

    ``storage_path`` is the experiment's own Train folder, so trial ids never collide; the run
    folder is refused if it would lie outside it.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = resources.gpus_per_worker > 0
    per_worker = {"CPU": resources.cpus_per_worker}
    if use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker
    name = run_name(tune.get_context().get_trial_id(), loop_config["params"])
    inside_root(storage_path, name, field="Train run name (trial id and fidelity)")
    trainer = TorchTrainer(
        train_worker_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=resources.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            # The latest checkpoint resumes a trial; older ones only fill the disk.
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    trainer.fit()
