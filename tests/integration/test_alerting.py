"""Alert → receiver → rerun with the real binaries: Debian's prometheus and prometheus-alertmanager on 127.0.0.1.

Prometheus evaluates the project's own rules (``monitoring/prometheus/rules.yaml``) every second against a tiny
metrics endpoint that exposes the monitor's gauges; Alertmanager runs a copy of the project's config
(``monitoring/alertmanager/alertmanager.yml``) with only the receiver's address and the timings changed (1 s
group wait, 4 s repeat); the receiver is the real ``bitpredict alert-receiver`` process, whose rerun command is a
script that leaves one marker file per run. Each test takes about 10-15 s.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "prometheus" / "rules.yaml"
ALERTMANAGER_CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
BITPREDICT = Path(sys.executable).parent / "bitpredict"

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="Debian's prometheus and prometheus-alertmanager are not installed (`make tools` installs them)",
)

MARKER_SCRIPT = """\
import json, os, pathlib, uuid
folder = pathlib.Path(os.environ["BITPREDICT_TEST_MARKERS"])
folder.mkdir(exist_ok=True)
(folder / f"rerun-{uuid.uuid4().hex}").write_text(os.environ["BITPREDICT_DATA_DIR"])
print(json.dumps({"mode": "test", "run_id": "marker", "ok": True}))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait(what: str, ready: Callable[[], Any], processes: dict[str, tuple[subprocess.Popen, Path]], timeout: float):
    """Poll ``ready`` until it returns something truthy; fail with the logs if a process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, (process, log) in processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            value = ready()
        except (httpx.HTTPError, OSError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.25)
    logs = "\n".join(f"--- {name}:\n{log.read_text()[-2000:]}" for name, (_, log) in processes.items())
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    receiver: str
    markers: Path
    decisions: Path
    processes: dict[str, tuple[subprocess.Popen, Path]]

    def reruns(self) -> list[Path]:
        return sorted(self.markers.glob("rerun-*")) if self.markers.exists() else []

    def records(self) -> list[dict[str, Any]]:
        if not self.decisions.exists():
            return []
        return [json.loads(line) for line in self.decisions.read_text().splitlines() if line.strip()]

    def wait(self, what: str, ready: Callable[[], Any], timeout: float = 30) -> Any:
        return _wait(what, ready, self.processes, timeout)

    def am_alerts(self) -> dict[str, dict[str, Any]]:
        """Alertmanager's view: alertname → the alert (state, receivers, inhibitedBy)."""
        reply = httpx.get(f"{self.alertmanager}/api/v2/alerts", timeout=5).json()
        return {a["labels"]["alertname"]: a for a in reply}


def _metrics_endpoint(text: str) -> ThreadingHTTPServer:
    body = text.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _alertmanager_config(receiver_port: int, token_file: Path) -> dict[str, Any]:
    """The project's config with the receiver on 127.0.0.1 and second-scale timings; routes and rules as they are."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for route in (config["route"], *config["route"]["routes"]):
        route.update(group_wait="1s", group_interval="2s", repeat_interval="4s")
    (rerun,) = [r for r in config["receivers"] if r["name"] == "bitpredict-rerun"]
    (webhook,) = rerun["webhook_configs"]
    webhook["url"] = f"http://127.0.0.1:{receiver_port}/alerts"
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return config


@contextmanager
def alert_stack(tmp_path: Path, metrics: str) -> Iterator[Stack]:
    """Metrics endpoint → Prometheus (the rules) → Alertmanager (the route) → the receiver → the marker script."""
    endpoint = _metrics_endpoint(metrics)
    prom_port, am_port, receiver_port = _port(), _port(), _port()
    token = tmp_path / "token"
    token.write_text("test-token\n")
    script = tmp_path / "rerun.py"
    script.write_text(MARKER_SCRIPT)
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump(_alertmanager_config(receiver_port, token)))
    prom_config = tmp_path / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "bitpredict-monitor", "honor_labels": True,
                            "static_configs": [{"targets": [f"127.0.0.1:{endpoint.server_address[1]}"]}]}],
    }))  # fmt: skip
    commands = {
        "receiver": [str(BITPREDICT), "alert-receiver", "--port", str(receiver_port), "--token-file", str(token),
                     "--state-dir", str(tmp_path / "alerts"),
                     "--rerun-command", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"],
        "alertmanager": [str(ALERTMANAGER), f"--config.file={am_config}", f"--storage.path={tmp_path / 'am'}",
                         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
        "prometheus": [str(PROMETHEUS), f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                       f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"],
    }  # fmt: skip
    env = {**os.environ, "BITPREDICT_DATA_DIR": str(tmp_path / "data"),
           "BITPREDICT_TEST_MARKERS": str(tmp_path / "markers")}  # fmt: skip
    processes: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        for name, command in commands.items():  # the receiver first: Alertmanager must find it listening
            log = tmp_path / f"{name}.log"
            process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)  # fmt: skip
            processes[name] = (process, log)
        stack = Stack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}",
                      f"http://127.0.0.1:{receiver_port}", tmp_path / "markers",
                      tmp_path / "alerts" / "decisions.jsonl", processes)  # fmt: skip
        for name, url in (("receiver", f"{stack.receiver}/healthz"), ("alertmanager", f"{stack.alertmanager}/-/ready"),
                          ("prometheus", f"{stack.prometheus}/-/ready")):  # fmt: skip
            stack.wait(f"{name} to be ready", lambda url=url: httpx.get(url, timeout=2).status_code == 200)
        yield stack
    finally:
        for process, _ in reversed(processes.values()):
            _stop(process)
        endpoint.shutdown()
        endpoint.server_close()


def _events(stack: Stack, event: str, alertname: str | None = None) -> list[dict[str, Any]]:
    found = [r for r in stack.records() if r["event"] == event]
    if alertname is not None:
        found = [r for r in found if alertname in r.get("alertnames", []) or alertname in r.get("group_key", "")]
    return found


def test_a_firing_rerun_rule_starts_exactly_one_rerun_through_alertmanager(tmp_path: Path) -> None:
    """Calibration broken → the rule fires → Alertmanager calls the receiver → one rerun; repeats start none."""
    now = time.time()
    metrics = (f"bitpredict_monitor_calibration_broken 1\nbitpredict_monitor_pinball_worse_than_naive 0\n"
               f"bitpredict_monitor_input_drift 0\nbitpredict_data_last_day_timestamp_seconds {now - 86400}\n"
               f"bitpredict_monitor_last_check_timestamp_seconds {now}\n")  # fmt: skip
    with alert_stack(tmp_path, metrics) as stack:
        started = stack.wait("the receiver to start a rerun", lambda: _events(stack, "started"), timeout=40)
        assert started[0]["reason"] == "started" and "BitPredictCalibrationBroken" in started[0]["group_key"]
        stack.wait("the rerun to finish", lambda: _events(stack, "finished"), timeout=20)
        # Alertmanager repeats the firing group every 4 s here: wait for two repeats of the first notification
        stack.wait("two repeat notifications", lambda: len(_events(stack, "received")) >= 3, timeout=30)
        time.sleep(0.5)  # the decision is recorded right after the notification
        assert len(stack.reruns()) == 1, stack.records()
        assert stack.reruns()[0].read_text() == str(tmp_path / "data")  # the data dir reached the rerun command
        received = _events(stack, "received", "BitPredictCalibrationBroken")
        assert len(received) >= 3 and {r["status"] for r in received} == {"firing"}
        assert {r["reason"] for r in _events(stack, "skipped")} == {"duplicate_group"}
        assert len(_events(stack, "started")) == 1
        (finished,) = _events(stack, "finished")
        assert finished["ok"] is True and finished["run_id"] == "marker"
        metrics_text = httpx.get(f"{stack.receiver}/metrics", timeout=5).text
        assert 'bitpredict_alert_receiver_reruns_total{outcome="ok"} 1.0' in metrics_text
        # only the labelled rule reached the receiver
        assert {n for r in _events(stack, "received") for n in r["alertnames"]} == {"BitPredictCalibrationBroken"}


def test_stale_data_pages_and_starts_no_rerun(tmp_path: Path) -> None:
    """No new data for 4 days: the rule fires, Alertmanager routes it to the default receiver, no rerun starts."""
    now = time.time()
    metrics = (f"bitpredict_monitor_calibration_broken 0\n"
               f"bitpredict_data_last_day_timestamp_seconds {now - 4 * 86400}\n"
               f"bitpredict_monitor_last_check_timestamp_seconds {now}\n")  # fmt: skip
    with alert_stack(tmp_path, metrics) as stack:
        alert = stack.wait("BitPredictNoNewData in Alertmanager", lambda: stack.am_alerts().get("BitPredictNoNewData"))
        assert alert["labels"]["action"] == "page" and alert["status"]["state"] == "active"
        assert [r["name"] for r in alert["receivers"]] == ["default"]
        time.sleep(6)  # past group wait and a repeat: anything routed to the receiver would have arrived
        assert httpx.get(f"{stack.receiver}/healthz", timeout=5).status_code == 200  # it was there to be called
        assert stack.records() == [] and stack.reruns() == []


def test_stale_data_holds_back_the_rerun_alerts(tmp_path: Path) -> None:
    """Calibration broken while no data arrives: a rerun cannot help, so the inhibit rule keeps it from firing one."""
    now = time.time()
    metrics = (f"bitpredict_monitor_calibration_broken 1\n"
               f"bitpredict_data_last_day_timestamp_seconds {now - 4 * 86400}\n"
               f"bitpredict_monitor_last_check_timestamp_seconds {now}\n")  # fmt: skip
    with alert_stack(tmp_path, metrics) as stack:
        alerts = stack.wait("both alerts in Alertmanager", lambda: len(stack.am_alerts()) >= 2 and stack.am_alerts())
        calibration = alerts["BitPredictCalibrationBroken"]
        assert calibration["status"]["state"] == "suppressed" and calibration["status"]["inhibitedBy"]
        time.sleep(6)
        assert stack.records() == [] and stack.reruns() == []
