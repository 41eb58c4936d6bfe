"""Safe defaults: loopback Ray, no unpickling, paths inside their root, no secrets written."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from efficient_search import local_ray
from efficient_search.fidelity import EPOCHS, RESTART, TRAINABLE_LAYERS, run_name
from efficient_search.redaction import (
    REDACTED,
    environment_secrets,
    is_secret_name,
    redact,
    redact_text,
)
from efficient_search.spec import ExperimentSpec
from efficient_search.store import ParquetStore, ParquetStoreCallback, make_row
from efficient_search.store.paths import inside_root

REPO = Path(__file__).resolve().parents[1]
CONTEXT = {"searcher": "random", "scheduler": "fifo", "seed": 0, "hardware": "test"}
HF_TOKEN = "hf_" + "Zq7" * 12  # what a Hugging Face token looks like


# -- 1. Ray listens on loopback by default --------------------------------------------------------
LISTENERS = r"""
import json, socket, sys, time
import psutil, ray
from efficient_search.local_ray import start_local_ray

start_local_ray(1, temp_dir=sys.argv[1], log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())  # a worker process is up too
time.sleep(2)  # the dashboard's agents start beside the raylet
me = psutil.Process()
found = []
for proc in [me, *me.children(recursive=True)]:
    try:
        name, sockets = proc.name(), proc.net_connections(kind="inet")
    except psutil.Error:
        continue
    for s in sockets:  # listening TCP, bound UDP
        if s.status == psutil.CONN_LISTEN or (s.type == socket.SOCK_DGRAM and not s.raddr):
            found.append([name, s.laddr.ip, s.laddr.port])
print("LISTENERS:" + json.dumps({"node_ip": ray.util.get_node_ip_address(), "sockets": found}))
ray.shutdown()
"""


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "localhost") or ip.startswith("::ffff:127.")


def test_a_local_ray_listens_on_loopback_only() -> None:
    temp_dir = tempfile.mkdtemp(prefix="es-lo-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop(local_ray.RAY_HOST_ENV, None)
    try:
        done = subprocess.run([sys.executable, "-c", LISTENERS, temp_dir], capture_output=True,
                              text=True, timeout=240, env=env, cwd=REPO)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("LISTENERS:")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1][len("LISTENERS:"):])
    names = {name for name, _, _ in report["sockets"]}
    # The GCS, the raylet and the dashboard with its agents were seen, so the check saw them all.
    assert {"gcs_server", "raylet"} <= names and len(report["sockets"]) >= 5, report
    assert report["node_ip"] == "127.0.0.1"
    public = [s for s in report["sockets"] if not is_loopback(s[1])]
    assert not public, f"Ray processes listening beyond loopback: {public}"


def test_the_host_opt_out_reaches_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    monkeypatch.delenv(local_ray.RAY_HOST_ENV, raising=False)
    local_ray.start_local_ray(1)
    assert calls[-1]["_node_ip_address"] == "127.0.0.1" and calls[-1]["dashboard_host"] == "127.0.0.1"
    monkeypatch.setenv(local_ray.RAY_HOST_ENV, "0.0.0.0")
    local_ray.start_local_ray(1)
    assert "_node_ip_address" not in calls[-1] and calls[-1]["dashboard_host"] == "0.0.0.0"
    local_ray.start_local_ray(1, host="10.1.2.3")
    assert calls[-1]["_node_ip_address"] == "10.1.2.3" and calls[-1]["dashboard_host"] == "10.1.2.3"


def test_start_ray_connects_before_it_starts_a_local_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    calls: list[dict] = []

    def init(**kw: object) -> None:
        calls.append(kw)
        if kw.get("address") == "auto":
            raise ConnectionError("no cluster")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(local_ray.RAY_HOST_ENV, raising=False)
    local_ray.start_ray(1)
    assert calls[0] == {"address": "auto"} and calls[1]["_node_ip_address"] == "127.0.0.1"


# -- 2. nothing of ours unpickles ----------------------------------------------------------------
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)


def unpickling_calls(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: call`` for every call in ``source`` that may unpickle a file."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            names = [a.name for a in node.names if a.name in ("load", "loads", "Unpickler")]
            if names:
                found.append(f"{filename}:{node.lineno}: from {node.module} import {', '.join(names)}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        bad = (
            (name == "torch.load" and not _keyword_is_true(node, "weights_only"))
            or (head.split(".")[0] in PICKLE_MODULES and last in ("load", "loads", "Unpickler", "open"))
            or (last == "load" and head in ("np", "numpy") and _keyword_is_true(node, "allow_pickle"))
            or last == "read_pickle"
            or name in ("yaml.load", "yaml.unsafe_load")
            or last == "get_pickled_error"  # Ray Tune's trial error, unpickled from storage
        )
        if bad:
            found.append(f"{filename}:{node.lineno}: {name}(...)")
    return found


def test_the_scanner_catches_unpickling() -> None:
    bad = ("import pickle, torch, numpy as np, joblib\n"
           "torch.load('a')\ntorch.load('a', weights_only=False)\npickle.loads(b'')\n"
           "np.load('a', allow_pickle=True)\njoblib.load('x')\nfrom pickle import load\n"
           "trial.get_pickled_error()\n")
    assert len(unpickling_calls(bad)) == 7
    good = "import torch, numpy as np\ntorch.load('a', weights_only=True)\nnp.load('a')\n"
    assert unpickling_calls(good) == []


def test_no_package_code_unpickles_files() -> None:
    found = []
    for folder in ("efficient_search", "search_spaces", "schedulers"):
        for path in sorted((REPO / folder).rglob("*.py")):
            found += unpickling_calls(path.read_text(), str(path.relative_to(REPO)))
    assert not found, "Load weights with torch.load(weights_only=True) or safetensors:\n" + "\n".join(found)


# -- 3. paths stay inside their root -------------------------------------------------------------
@pytest.mark.parametrize("name, problem", [
    ("..", "it is '..'"),
    ("/etc", "absolute path"),
    ("a/b", "path separator"),
    ("a\\b", "path separator"),
    ("a\x00b", "NUL"),
    ("", "empty"),
])
def test_names_that_would_leave_the_root_are_refused(tmp_path, name: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        inside_root(str(tmp_path), name, field="experiment")
    message = str(info.value)
    assert "`experiment`" in message and repr(name) in message and problem in message
    assert "Fix:" in message


def test_plain_names_join_under_local_and_uri_roots(tmp_path) -> None:
    assert inside_root(str(tmp_path), "_train", "exp-1", field="x") == f"{tmp_path}/_train/exp-1"
    assert inside_root("s3://bucket/root/", "experiment=a", field="x") == "s3://bucket/root/experiment=a"
    with pytest.raises(ValueError, match="`name` '..'"):
        inside_root("s3://bucket/root", "..", field="name")


def test_a_symlink_out_of_the_root_is_refused(tmp_path) -> None:
    root, outside = tmp_path / "store", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "experiment=evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError) as info:
        inside_root(str(root), "experiment=evil", field="experiment")
    assert "`experiment` 'experiment=evil'" in str(info.value) and "symbolic link" in str(info.value)
    assert "Fix:" in str(info.value)
    store = ParquetStore(root)
    with pytest.raises(ValueError, match="outside its root"):
        store.append("evil", [make_row(trial_id="t", config={}, result={}, status="RUNNING",
                                       context=CONTEXT)])
    assert list(outside.iterdir()) == []
    (root / "experiment=inside").symlink_to(root / "real", target_is_directory=True)
    assert inside_root(str(root), "experiment=inside", field="experiment")  # a link within is fine


def test_store_and_spec_refuse_escaping_experiment_names(tmp_path) -> None:
    for name in ("../x", "/tmp/x", "a/b", "a\x00b", ".."):
        with pytest.raises(ValueError, match="`experiment`"):
            ParquetStore(tmp_path).append(name, [{"trial_id": "t", "iteration": 1, "status": "RUNNING"}])
        with pytest.raises(ValueError, match="`name`"):
            ExperimentSpec(name=name)


def test_a_fidelity_run_name_cannot_leave_the_train_folder(tmp_path) -> None:
    config = {RESTART: True, TRAINABLE_LAYERS: "../../etc", EPOCHS: 1}
    with pytest.raises(ValueError, match="path separator"):
        inside_root(str(tmp_path), run_name("abc_00001", config), field="Train run name")
    config[TRAINABLE_LAYERS] = 2
    assert inside_root(str(tmp_path), run_name("abc_00001", config), field="Train run name")


# -- 4. secrets are not written ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["api_key", "apiKey", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "WANDB_API_KEY",
                                  "RAY_AUTH_TOKEN", "password", "db_passwd", "credentials", "token",
                                  "auth", "private_key"])
def test_secret_looking_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "fidelity/tokens", "tokenizer", "pad_token", "eos_token",
                                  "lr", "author", "keys", "monkey", "trainable_layers"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_redact_keys_nested_and_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a setting, not a secret
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to hunt for in text
    assert HF_TOKEN in environment_secrets() and "disabled" not in environment_secrets()
    data = {"lr": 0.1, "opts": {"api_key": "abc", "token_budget": 1000, "layers": [1, 2]},
            "note": f"Bearer {HF_TOKEN}", "items": [{"password": "pw"}, HF_TOKEN], "mode": "disabled"}
    assert redact(data) == {"lr": 0.1, "opts": {"api_key": REDACTED, "token_budget": 1000, "layers": [1, 2]},
                            "note": f"Bearer {REDACTED}", "items": [{"password": REDACTED}, REDACTED],
                            "mode": "disabled"}
    assert redact_text(f"x={HF_TOKEN};") == f"x={REDACTED};"


def test_secrets_never_reach_the_metadata_or_the_parquet_rows(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    spec = ExperimentSpec(name="secrets", task_options={"epochs": 2, "api_key": "abc"}, store=str(tmp_path))
    callback = ParquetStoreCallback(str(tmp_path), experiment="secrets", searcher="random",
                                    metadata={"spec": spec.to_dict(), "metric": "val_accuracy"})
    callback.setup()
    config = {"lr": 0.1, "dataset": HF_TOKEN, "note": "ordinary-value-xyz",
              "nested": {"auth_token": "nested-secret-123"}}
    for i in (1, 2):
        callback.add("t1", config, {"training_iteration": i, "acc": 0.5, "hub": f"id {HF_TOKEN}"}, "RUNNING")
    callback.add("t1", config, {"training_iteration": 2}, "ERROR",
                 error=f"HTTPError: 401 for token {HF_TOKEN}")
    callback.flush()
    partition = tmp_path / "experiment=secrets"
    meta_bytes = (partition / "_experiment.json").read_bytes()
    assert b'"abc"' not in meta_bytes and HF_TOKEN.encode() not in meta_bytes
    assert json.loads(meta_bytes)["spec"]["task_options"] == {"epochs": 2, "api_key": REDACTED}
    data = b"".join(p.read_bytes() for p in partition.glob("*.parquet"))
    for secret in (HF_TOKEN, "nested-secret-123"):
        assert secret.encode() not in data
    assert b"ordinary-value-xyz" in data  # the byte search does see plain values
    frame = ParquetStore(tmp_path).results("secrets")
    text = frame.astype(str).to_csv()
    assert HF_TOKEN not in text and "nested-secret-123" not in text
    assert set(frame["config.dataset"]) == {REDACTED} and set(frame["config.note"]) == {"ordinary-value-xyz"}
    assert set(frame["config.nested.auth_token"]) == {REDACTED}
    assert frame["metric.acc"].dropna().tolist() == [0.5, 0.5] and (frame["config.lr"] == 0.1).all()
    assert REDACTED in frame.loc[frame["status"] == "ERROR", "error"].iloc[0]


def test_submit_prints_job_logs_without_secrets(tmp_path, monkeypatch, capsys) -> None:
    import ray.job_submission

    from efficient_search.submit import submit

    token = "ray-token-" + "9" * 30
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    logs = [f"start\nuses {HF_TOKEN[:10]}", f"start\nuses {HF_TOKEN} and {token}\nextra: supersecret-1\nok\n"]

    class FakeClient:
        def __init__(self, address: str, headers: dict) -> None:
            assert headers == {"Authorization": f"Bearer {token}"}
            self.polls = 0

        def submit_job(self, **kw: object) -> str:
            return "job-1"

        def get_job_status(self, job_id: str) -> str:
            self.polls += 1
            return "JobStatus.RUNNING" if self.polls == 1 else "JobStatus.SUCCEEDED"

        def get_job_logs(self, job_id: str) -> str:
            return logs[min(self.polls, 2) - 1]

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", FakeClient)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"name": "s"}))
    job, status = submit(tmp_path / "spec.yaml", address="http://127.0.0.1:1", working_dir=str(tmp_path),
                         runtime_env={"env_vars": {"EXTRA_PASSWORD": "supersecret-1"}}, poll_s=0)
    out = capsys.readouterr().out
    assert status == "SUCCEEDED"
    for secret in (HF_TOKEN, HF_TOKEN[:10], token, "supersecret-1"):
        assert secret not in out
    assert out.count("start\n") == 1 and out.endswith("ok\n") and REDACTED in out


def test_cli_errors_are_printed_without_secrets(tmp_path, monkeypatch, capsys) -> None:
    from efficient_search.cli import main

    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    assert main(["report", "--store", str(tmp_path), "--experiment", HF_TOKEN]) == 2
    err = capsys.readouterr().err
    assert "is not in the store" in err and HF_TOKEN not in err and REDACTED in err


def test_results_frame_dtypes_survive_redaction(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    store.append("plain", [make_row(trial_id="t", config={"lr": 0.1, "tokens": 5},
                                    result={"training_iteration": 1, "fidelity/tokens": 64.0},
                                    status="RUNNING", context=CONTEXT)])
    frame = store.results("plain")
    assert frame["config.tokens"].tolist() == [5] and frame["fidelity.tokens"].tolist() == [64.0]
    assert pd.api.types.is_float_dtype(frame["config.lr"])
