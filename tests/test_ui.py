"""`orca ui`: its checks, and the two UIs end to end in headless Chromium.

The end-to-end test runs a one-run benchmark and its comparison into a fresh state
directory (in a subprocess, as `orca bench` and `orca compare` would), then starts `orca ui`
on that directory and drives Debian's Chromium through Playwright: the compare flow run in
the Prefect UI with its `orca-comparison` table artifact, and the pipeline's run in the
MLflow UI with its test metric, and the comparison's markdown artifact with its
performance profile shown inline. Screenshots go under the test's temporary directory. It
is skipped, saying why, where Chromium or Playwright is not installed.

The README's screenshots come from `test_readme_screenshots_of_a_state`, which runs only
when ORCA_UI_SHOTS_STATE names a state directory (a demo's) and writes to
ORCA_UI_SHOTS_DIR (default docs/images):

    ORCA_UI_SHOTS_STATE=/path/to/demo-state .venv/bin/python -m pytest tests/test_ui.py -k readme
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from cli.main import main
from cli.ui import UIOptions, check_port_free

CHROMIUM = Path(os.environ.get("ORCA_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_START_TIMEOUT_S = 150
PAGE_TIMEOUT_MS = 60_000
MIN_SCREENSHOT_BYTES = 30_000  # a blank or error page compresses to a few kB
TINY = [
    "--set", "proxy.max_examples=60", "--set", "proxy.max_tokens=16",
    "--set", "align.epochs=1", "--set", "align.samples_per_class=8",
    "--set", "refine.epochs=1", "--set", "refine.batch_size=16",
]  # fmt: skip
# One process for both commands: the comparison reuses the benchmark's temporary server.
BENCH_THEN_COMPARE = (
    "import json, sys\n"
    "from cli.main import main\n"
    "for argv in json.loads(sys.argv[1]):\n"
    "    assert main(argv) == 0, argv\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the command's own checks (fast: nothing is started) ---


def test_ui_help_lists_its_options(capsys):
    assert main(["ui", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--host HOST", "--prefect-port PORT", "--mlflow-port PORT", "--json"):
        assert option in text
    assert "[default: 127.0.0.1]" in text and "[default: 4200]" in text
    assert "[default: 5000]" in text


@pytest.fixture
def no_servers(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("orca ui must fail before starting any server")

    monkeypatch.setattr("cli.ui.ChildServer.start", refuse)


@pytest.mark.parametrize("busy_flag", ["--prefect-port", "--mlflow-port"])
def test_ui_exits_2_naming_a_port_in_use(busy_flag, no_servers, capsys):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        ports = {"--prefect-port": _free_port(), "--mlflow-port": _free_port()}
        ports[busy_flag] = busy
        argv = ["ui", *(str(part) for item in ports.items() for part in item)]
        assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"port {busy} on 127.0.0.1 is not available" in error
    assert f"choose another with {busy_flag}" in error


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--prefect-port", "7000", "--mlflow-port", "7000"], "both 7000; the two servers"),
        (["--prefect-port", "0"], "--prefect-port 0: a port is an integer from 1 to 65535"),
        (["--mlflow-port", "70000"], "--mlflow-port 70000: a port is an integer from 1 to"),
        (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid' is not a usable"),
        (["--host", ""], "--host '' is not a usable address"),
    ],
)
def test_ui_rejects_bad_arguments_before_starting(arguments, message, no_servers, capsys):
    assert main(["ui", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_ui_urls_reach_a_wildcard_host_through_the_loopback():
    assert UIOptions("127.0.0.1", 4200, 5000).url(4200) == "http://127.0.0.1:4200"
    assert UIOptions("0.0.0.0", 4200, 5000).url(5000) == "http://127.0.0.1:5000"
    assert UIOptions("::", 4200, 5000).url(4200) == "http://[::1]:4200"
    assert UIOptions("::1", 4200, 5000).url(4200) == "http://[::1]:4200"


# --- end to end, in headless Chromium ---


def _sync_playwright():
    """Playwright's sync API, or a skip that says what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"Debian chromium not installed ({CHROMIUM} is missing): apt-get install chromium"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[dev]' (no browser download)")
    return sync_playwright


def _environment(state: Path) -> dict[str, str]:
    """This process's environment without its Prefect/MLflow settings, orca's state at
    `state`."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_"))
        and key not in ("ORCA_HOME", "ORCA_RESULT_STORAGE")
    }
    environment.update(ORCA_HOME=str(state), HF_HUB_OFFLINE="1", PREFECT_LOGGING_LEVEL="WARNING")
    return environment


def _bench_and_compare(state: Path, backbone: Path, workdir: Path) -> tuple[dict, dict]:
    bench = [
        "bench", "--tasks", "gunpoint", "--methods", "no-align", "--seeds", "1",
        "--backbone", str(backbone), *TINY, "--json",
    ]  # fmt: skip
    compare = ["compare", "--reports-dir", str(workdir / "reports"), "--json"]
    done = subprocess.run(
        [sys.executable, "-c", BENCH_THEN_COMPARE, json.dumps([bench, compare])],
        cwd=workdir,  # MLflow's default artifact root (./mlruns) lands here, not in the repo
        env=_environment(state),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    bench_out, compare_out = json.loads(lines[-2]), json.loads(lines[-1])
    assert bench_out["runs"] == 1 and bench_out["failures"] == [], bench_out
    return bench_out, compare_out


class UIProcess:
    """`orca ui` in a subprocess; its stdout read line by line on a thread."""

    def __init__(self, state: Path, workdir: Path, prefect_port: int, mlflow_port: int):
        command = [
            sys.executable, "-m", "cli.main", "ui",
            "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port), "--json",
        ]  # fmt: skip
        self.stderr_path = workdir / "orca-ui.stderr"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=workdir,
                env=_environment(state),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def diagnostics(self) -> str:
        return "\n".join(self.output) + "\n" + self.stderr_path.read_text(errors="replace")

    def urls(self) -> dict[str, str]:
        """The JSON line `orca ui --json` prints once both servers answer."""
        deadline = time.monotonic() + UI_START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.process.poll() is None, self.diagnostics()
                continue
            self.output.append(line)
            if line.startswith("{"):
                return json.loads(line)
        seconds = UI_START_TIMEOUT_S
        raise AssertionError(f"orca ui gave no URLs in {seconds} s:\n{self.diagnostics()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def _compare_flow_run(prefect_url: str) -> dict:
    response = httpx.post(
        f"{prefect_url}/api/flow_runs/filter",
        json={"flows": {"name": {"any_": ["orca-compare"]}}},
        timeout=30,
    )
    response.raise_for_status()
    runs = response.json()
    assert len(runs) == 1, runs
    return runs[0]


def _markdown_artifact(prefect_url: str, key: str) -> dict:
    """The latest artifact with `key`."""
    response = httpx.post(
        f"{prefect_url}/api/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
        timeout=30,
    )
    response.raise_for_status()
    [artifact] = response.json()
    return artifact


def _check_inline_profile(page, prefect_url: str, shots: Path, name: str) -> None:
    """The comparison's markdown artifact page shows the profile plot: the browser has
    decoded the inlined PNG (a broken image has naturalWidth 0)."""
    from playwright.sync_api import expect

    artifact = _markdown_artifact(prefect_url, "orca-comparison-report")
    assert "](data:image/png;base64," in artifact["data"]
    page.goto(f"{prefect_url}/artifacts/artifact/{artifact['id']}")
    image = page.locator('img[src^="data:image/png;base64,"]').first
    expect(image).to_be_visible()
    image.scroll_into_view_if_needed()
    width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 200, width  # the plot is 6.4 in x 100 dpi or more
    _shoot(page, shots / name)


def _pipeline_run(mlflow_url: str, sweep_run_id: str) -> dict:
    api = f"{mlflow_url}/api/2.0/mlflow"
    experiment = httpx.get(
        f"{api}/experiments/get-by-name", params={"experiment_name": "orca"}, timeout=30
    ).json()["experiment"]
    found = httpx.post(
        f"{api}/runs/search",
        json={
            "experiment_ids": [experiment["experiment_id"]],
            "filter": f"tags.`orca.benchmark_run` = '{sweep_run_id}'",
        },
        timeout=30,
    ).json()["runs"]
    assert len(found) == 1, found
    return found[0]


def _shoot(page, path: Path) -> Path:
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > MIN_SCREENSHOT_BYTES, (path, path.stat().st_size)
    return path


def _check_prefect_ui(page, prefect_url: str, compare_out: dict, shots: Path) -> None:
    """The compare flow run's page lists its table artifact; the artifact shows the table."""
    from playwright.sync_api import expect

    flow_run = _compare_flow_run(prefect_url)
    page.goto(f"{prefect_url}/runs/flow-run/{flow_run['id']}")
    expect(page.get_by_text(flow_run["name"], exact=True).first).to_be_visible()
    expect(page.get_by_text("orca-compare", exact=True).first).to_be_visible()
    page.locator("[role=tablist]").get_by_text("Artifacts", exact=True).click()
    card = page.get_by_text("orca-comparison", exact=True)
    expect(card.first).to_be_visible()
    expect(page.get_by_text("Mean and std of each task x method over seeds").first).to_be_visible()
    _shoot(page, shots / "prefect-flow-run.png")

    card.first.click()
    expect(page).to_have_url(re.compile(r"/artifacts/artifact/"))
    expect(page.get_by_text(flow_run["name"], exact=True).first).to_be_visible()  # its run
    [row] = compare_out["rows"]
    table_row = page.get_by_role("row").filter(has_text=row["method"])
    for value in (row["task"], row["method"], row["metric"], repr(row["mean"])):
        expect(table_row).to_contain_text(value)
    _shoot(page, shots / "prefect-comparison-artifact.png")


def _check_mlflow_ui(page, mlflow_url: str, bench_out: dict, shots: Path) -> None:
    """The pipeline's MLflow run page shows its name and its test metric with the value."""
    from playwright.sync_api import expect

    run = _pipeline_run(mlflow_url, bench_out["sweep_run_id"])
    info, [result] = run["info"], bench_out["results"]
    page.goto(f"{mlflow_url}/#/experiments/{info['experiment_id']}/runs/{info['run_id']}")
    expect(page.get_by_text(info["run_name"], exact=True).first).to_be_visible()
    assert info["run_name"] == f"gunpoint-no-align-seed{result['seed']}"
    metric = f"test_{result['metric']}"
    metric_row = page.get_by_role("row").filter(has_text=metric)
    expect(metric_row).to_contain_text(repr(result["value"]))
    metric_row.scroll_into_view_if_needed()
    _shoot(page, shots / "mlflow-run.png")


def _browser(playwright, profile: Path):
    """Debian's Chromium, headless, on a fresh profile, reaching only the local servers."""
    browser = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1400, "height": 900},
    )
    browser.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda r: r.abort())
    browser.set_default_timeout(PAGE_TIMEOUT_MS)
    return browser


def test_orca_ui_shows_the_flow_run_artifact_and_the_mlflow_run(tmp_path, tiny_bert_dir):
    sync_playwright = _sync_playwright()
    from playwright.sync_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)  # (5 s by default) single-page apps on 2 cores
    state, shots = tmp_path / "state", tmp_path / "screenshots"
    shots.mkdir()
    bench_out, compare_out = _bench_and_compare(state, tiny_bert_dir, tmp_path)

    prefect_port, mlflow_port = _free_port(), _free_port()
    ui = UIProcess(state, tmp_path, prefect_port, mlflow_port)
    try:
        urls = ui.urls()
        assert urls == {
            "prefect_url": f"http://127.0.0.1:{prefect_port}",
            "mlflow_url": f"http://127.0.0.1:{mlflow_port}",
        }
        assert ui.output == [json.dumps(urls)]  # with --json, stdout is the JSON alone
        said = ui.stderr_path.read_text()  # and the lines for people go to stderr
        assert f"Prefect UI: {urls['prefect_url']}" in said
        assert f"MLflow UI:  {urls['mlflow_url']}" in said
        with sync_playwright() as playwright:
            browser = _browser(playwright, tmp_path / "chromium-profile")
            try:
                page = browser.new_page()
                _check_prefect_ui(page, urls["prefect_url"], compare_out, shots)
                _check_inline_profile(page, urls["prefect_url"], shots, "prefect-report.png")
                _check_mlflow_ui(page, urls["mlflow_url"], bench_out, shots)
            finally:
                browser.close()
    finally:
        returncode = ui.stop()
    assert returncode == 0, ui.diagnostics()
    # Both servers stopped with it: their ports are free again.
    for port in (prefect_port, mlflow_port):
        check_port_free("127.0.0.1", port, "--port")
    for log in ("prefect-server.log", "mlflow-server.log"):
        assert (state / "logs" / log).stat().st_size > 0, log
    assert sorted(p.name for p in shots.iterdir()) == [
        "mlflow-run.png",
        "prefect-comparison-artifact.png",
        "prefect-flow-run.png",
        "prefect-report.png",
    ]


# --- the README's screenshots, on a given state (opt-in) ---


def _shoot_readme_pages(page, urls: dict[str, str], shots: Path) -> None:
    """The Prefect UI's flow runs and comparison report; MLflow's runs and models."""
    from playwright.sync_api import expect

    prefect, mlflow = urls["prefect_url"], urls["mlflow_url"]
    page.goto(f"{prefect}/runs")
    expect(page.get_by_text("orca-compare").first).to_be_visible()  # the latest runs first
    expect(page.get_by_text("orca-pipeline").first).to_be_visible()
    _shoot(page, shots / "prefect-runs.png")
    _check_inline_profile(page, prefect, shots, "prefect-comparison-report.png")

    api = f"{mlflow}/api/2.0/mlflow"
    experiment = httpx.get(
        f"{api}/experiments/get-by-name", params={"experiment_name": "orca"}, timeout=30
    ).json()["experiment"]
    [sweep] = httpx.post(
        f"{api}/runs/search",
        json={
            "experiment_ids": [experiment["experiment_id"]],
            "filter": "tags.`orca.kind` = 'benchmark'",
            "order_by": ["attributes.start_time DESC"],
            "max_results": 1,
        },
        timeout=30,
    ).json()["runs"]
    page.goto(f"{mlflow}/#/experiments/{experiment['experiment_id']}/runs")
    sweep_cell = page.get_by_role("gridcell", name=re.compile(sweep["info"]["run_name"]))
    expect(sweep_cell.first).to_be_visible()
    assistant = page.get_by_role("button", name="Close", exact=True)
    if assistant.count():  # MLflow's assistant panel, open on a first visit
        assistant.first.click()
    sweep_cell.first.get_by_role("button").first.click()  # show its pipeline runs
    expect(page.get_by_text("gunpoint-orca-seed0").first).to_be_visible()
    _shoot(page, shots / "mlflow-runs.png")
    page.goto(f"{mlflow}/#/models")
    expect(page.get_by_text("orca-gunpoint", exact=True).first).to_be_visible()
    announcement = page.get_by_role("dialog")  # MLflow's what's-new dialog, on a first visit
    if announcement.count():
        page.keyboard.press("Escape")
        expect(announcement).to_have_count(0)
    expect(page.get_by_text("champion").first).to_be_visible()  # the compare flow's aliases
    _shoot(page, shots / "mlflow-models.png")


@pytest.mark.skipif(
    not os.environ.get("ORCA_UI_SHOTS_STATE"),
    reason="opt-in: set ORCA_UI_SHOTS_STATE to a demo's state directory",
)
def test_readme_screenshots_of_a_state(tmp_path):
    sync_playwright = _sync_playwright()
    from playwright.sync_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    state = Path(os.environ["ORCA_UI_SHOTS_STATE"]).resolve()
    shots = Path(os.environ.get("ORCA_UI_SHOTS_DIR", "docs/images")).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    ui = UIProcess(state, tmp_path, _free_port(), _free_port())
    try:
        urls = ui.urls()
        with sync_playwright() as playwright:
            browser = _browser(playwright, tmp_path / "chromium-profile")
            try:
                _shoot_readme_pages(browser.new_page(), urls, shots)
            finally:
                browser.close()
    finally:
        assert ui.stop() == 0, ui.diagnostics()
