"""`efficient-search report --html`: one self-contained page, checked in headless chromium (it
loads without console errors, every plot renders, the table sorts) and section by section."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import efficient_search as es
from efficient_search.cli import main as cli
from efficient_search.html_report import fidelity_correlation, write_html_report
from efficient_search.store import ParquetStore


@pytest.fixture(scope="module")
def report(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real digits search (4 trials, 3 epochs each) and its page, written by the CLI."""
    root = tmp_path_factory.mktemp("html") / "results"
    es.run({"name": "page", "task_options": {"epochs": 3},
            "search_space": {"lr": {"loguniform": [0.01, 0.5]}, "depth": {"randint": [1, 3]}, "width": 8,
                             "batch_size": 64},
            "num_samples": 4, "resources": {"num_workers": 0, "cpus_per_worker": 1}, "store": str(root),
            "verbose": 0})
    assert cli(["report", "--store", str(root), "--experiment", "page", "--html"]) == 0
    return root / "_plots" / "page.html"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)
    yield session
    session.quit()


def column(browser: Any, name: str) -> list[float]:
    from selenium.webdriver.common.by import By

    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#trials th")]
    index = headers.index(name) + 1
    return [float(c.text) for c in browser.find_elements(By.CSS_SELECTOR, f"#trials td:nth-child({index})")]


def test_the_page_loads_renders_every_plot_and_sorts_in_chromium(report: Path, browser: Any) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    html = report.read_text()
    assert "cdn" not in html.lower().split("<script>")[0] and "<script src=" not in html  # works offline
    browser.get(report.as_uri())
    # curves, best so far, fidelity correlation, importance (a loaded machine parses the page's
    # inlined plotly slowly: wait for them rather than read the page once)
    WebDriverWait(browser, 60).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")) >= 4)
    plots = browser.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")
    WebDriverWait(browser, 60).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".plotly-graph-div .main-svg")) >= len(plots))
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe
    for plot in plots:
        browser.execute_script("arguments[0].scrollIntoView();", plot)
        pixels = np.asarray(Image.open(io.BytesIO(plot.screenshot_as_png)).convert("L"), dtype=float)
        assert pixels.std() > 5, "a blank plot"
    lr = browser.find_elements(By.XPATH, "//table[@id='trials']//th[text()='lr']")[0]
    lr.click()
    assert column(browser, "lr") == sorted(column(browser, "lr"))
    lr.click()
    assert column(browser, "lr") == sorted(column(browser, "lr"), reverse=True)
    browser.get("about:blank")
    browser.get(report.as_uri() + "#sort=depth&desc")
    assert column(browser, "depth") == sorted(column(browser, "depth"), reverse=True)


def test_sections_follow_what_the_experiment_has(tmp_path: Path) -> None:
    store = ParquetStore(str(tmp_path / "store"))
    rows = []
    for t, (lr, final) in enumerate([(0.1, 3.0), (0.2, 2.5), (0.3, 2.8), (0.4, 2.2), (0.5, 3.1)]):
        for step in (1, 2, 3):
            rows.append({"trial_id": f"t{t}", "iteration": step, "status": "RUNNING",
                         "timestamp": 10.0 * t + step, "time_total_s": float(step), "config.lr": lr,
                         "metric.val_loss": final + 1.0 / step,
                         "metric.params": 1000.0 * (t + 1), "fidelity.tokens": 100.0 * step,
                         "cost.flops": 6e3 * (t + 1) * step})
    store.append("lm", rows)
    store.write_metadata("lm", {"metric": "val_loss", "mode": "min", "objectives": ["val_loss", "params"],
                                "modes": ["min", "min"]})
    page = write_html_report(store, "lm", tmp_path / "lm.html").read_text()
    for title in ("Learning curves", "Best so far", "Pareto front", "Rank correlation across fidelities",
                  "Compute axis", "Hyperparameter importance"):
        assert f"<h2>{title}</h2>" in page
    correlation = fidelity_correlation(store.results("lm"), "metric.val_loss")
    assert list(correlation["level"]) == [100.0, 200.0]
    assert correlation["fidelity"].iloc[0] == "fidelity.tokens"
    assert correlation["spearman"].tolist() == pytest.approx([1.0, 1.0])
