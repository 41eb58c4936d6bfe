"""examples/smollm2-search.yaml then examples/smollm2-distill.yaml: the second trains what the first chose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import efficient_search as es
from efficient_search.store import ParquetStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL_TEXT = {"max_chars": 40_000}  # the same splits in both steps, only smaller


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def test_the_two_examples_share_one_text_layout() -> None:
    search, distill = example("smollm2-search.yaml"), example("smollm2-distill.yaml")
    layout = ("model", "text", "max_chars", "seq_len", "val_fraction", "search_fraction")
    assert {k: search["task_options"][k] for k in layout} == {k: distill["task_options"][k] for k in layout}
    assert distill["task_options"]["searched"]["experiment"] == search["name"]
    assert search["task_options"]["split"] == "search"


@pytest.mark.slow
def test_the_distill_example_trains_the_sub_network_the_search_example_chose(tmp_path: Path) -> None:
    store = str(tmp_path / "results")
    search = example("smollm2-search.yaml")
    search["task_options"].update(SMALL_TEXT, eval_sequences=2, calibration_sequences=2)
    found = es.run(search, store=store, num_samples=2, verbose=0)
    assert not found.grid.errors
    distill = example("smollm2-distill.yaml")
    distill["task_options"].update(SMALL_TEXT, max_tokens=4 * 8 * 128, reports=2, eval_sequences=4,
                                   searched={**distill["task_options"]["searched"], "store": store})
    trained = es.run(distill, store=store, verbose=0)
    assert not trained.grid.errors
    rows = ParquetStore(store).results("smollm2-distill")
    last = rows[rows["status"] == "RUNNING"].sort_values("iteration").iloc[-1]
    searched = ParquetStore(store).results("smollm2-search")
    best = searched[searched["status"] == "RUNNING"].sort_values("metric.val_perplexity").iloc[0]
    assert last["metric.init"] == "searched" and last["metric.distill"] == "offline"
    assert last["metric.params"] == best["metric.params"]
    assert 0.075 * 134_515_008 <= last["metric.params"] <= 0.1 * 134_515_008
