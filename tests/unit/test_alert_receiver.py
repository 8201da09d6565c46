"""The alert receiver's contract: payload checks, one rerun per firing group, the cooldown, failures given back.

The decision is a pure function (``decide``), tested on hand-made notifications; ``AlertReceiver`` is tested with
a rerun callable that records its calls, and its HTTP face on a real server on 127.0.0.1. The path through real
Prometheus and Alertmanager is in ``tests/integration/test_alerting.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitpredict.operations.alert_receiver import (
    AlertReceiver,
    PayloadError,
    ReceiverState,
    decide,
    make_server,
    parse_notification,
)

NOW = datetime(2026, 3, 9, 7, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
GROUP = '{}/{action="rerun"}:{alertname="BitPredictCalibrationBroken"}'


def payload(status: str = "firing", group: str = GROUP, *alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    alerts = alerts or (alert(),)
    return {"version": "4", "groupKey": group, "status": status, "receiver": "bitpredict-rerun",
            "groupLabels": {}, "commonLabels": {}, "alerts": list(alerts), **extra}  # fmt: skip


def alert(name: str = "BitPredictCalibrationBroken", action: str | None = "rerun", status: str = "firing",
          starts: str = "2026-03-09T06:30:00.123456789Z") -> dict[str, Any]:  # fmt: skip
    labels = {"alertname": name, "severity": "warning", **({"action": action} if action else {})}
    return {"status": status, "labels": labels, "annotations": {}, "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z"}


def note(*args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
    return parse_notification(json.dumps(payload(*args, **kwargs)).encode())


# ---------------------------------------------------------------------------------------------------------
# payloads
# ---------------------------------------------------------------------------------------------------------


def test_a_real_alertmanager_payload_is_read() -> None:
    parsed = note()
    assert parsed.group_key == GROUP and parsed.status == "firing"
    (only,) = parsed.rerun_alerts()
    assert only.starts_at == datetime(2026, 3, 9, 6, 30, 0, 123456, tzinfo=UTC)  # nanoseconds read, to µs


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps(payload(version="3")).encode(), "version '3'"),
        (json.dumps({**payload(), "groupKey": ""}).encode(), "groupKey"),
        (json.dumps(payload(status="pending")).encode(), "status must be"),
        (json.dumps({**payload(), "alerts": {}}).encode(), "alerts must be a list"),
        (json.dumps(payload("firing", GROUP, {**alert(), "labels": {"a": 1}})).encode(), "alerts[0].labels"),
        (json.dumps(payload("firing", GROUP, {**alert(), "startsAt": "yesterday"})).encode(), "alerts[0].startsAt"),
        (json.dumps(payload("firing", GROUP, {**alert(), "status": None})).encode(), "alerts[0].status"),
    ],
)
def test_a_bad_payload_is_refused_with_the_reason(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_notification(body)


# ---------------------------------------------------------------------------------------------------------
# decisions
# ---------------------------------------------------------------------------------------------------------


def test_a_firing_rerun_group_starts_once_and_its_repeats_start_nothing() -> None:
    first, state = decide(note(), ReceiverState(), NOW, DAY)
    assert first.start and first.reason == "started" and state.last_started_at == NOW.isoformat()
    # the same group again, long after the cooldown: still the same episode, a repeat
    repeat, again = decide(note(), state, NOW + 3 * DAY, DAY)
    assert (repeat.start, repeat.reason) == (False, "duplicate_group") and again == state


def test_a_second_group_within_the_cooldown_starts_nothing_and_after_it_starts() -> None:
    _, state = decide(note(), ReceiverState(), NOW, DAY)
    other = note("firing", '{}:{alertname="BitPredictPinballWorseThanNaive"}', alert("BitPredictPinballWorseThanNaive"))
    held, same = decide(other, state, NOW + timedelta(hours=23), DAY)
    assert (held.start, held.reason) == (False, "cooldown") and same == state
    later, after = decide(other, state, NOW + timedelta(hours=25), DAY)
    assert later.start and set(after.groups) == {GROUP, other.group_key}


def test_the_drift_checks_rerun_counts_for_the_cooldown() -> None:
    held, _ = decide(note(), ReceiverState(), NOW, DAY, other_trigger_at=NOW - timedelta(hours=2))
    assert held.reason == "cooldown" and "the drift check" in held.detail
    free, _ = decide(note(), ReceiverState(), NOW, DAY, other_trigger_at=NOW - timedelta(hours=30))
    assert free.start


def test_resolved_starts_nothing_and_frees_the_group_for_its_next_episode() -> None:
    _, state = decide(note(), ReceiverState(), NOW, DAY)
    resolved, freed = decide(note("resolved", GROUP, alert(status="resolved")), state, NOW + DAY, DAY)
    assert not resolved.start and resolved.reason == "resolved" and GROUP not in freed.groups
    again, _ = decide(note(starts="2026-03-11T06:30:00Z"), freed, NOW + 2 * DAY, DAY)
    assert again.start


def test_a_group_that_fired_again_after_a_lost_resolved_is_a_new_episode() -> None:
    _, state = decide(note(), ReceiverState(), NOW, DAY)
    refired = note("firing", GROUP, alert(starts="2026-03-10T06:30:00Z"))
    within, _ = decide(refired, state, NOW + timedelta(hours=12), DAY)
    assert within.reason == "cooldown"  # a new start, but the cooldown still holds it
    after, _ = decide(refired, state, NOW + timedelta(hours=30), DAY)
    assert after.start


def test_alerts_without_the_rerun_label_start_nothing() -> None:
    stale = note("firing", '{}:{alertname="BitPredictNoNewData"}', alert("BitPredictNoNewData", action="page"))
    decision, state = decide(stale, ReceiverState(), NOW, DAY)
    assert (decision.start, decision.reason) == (False, "no_rerun_alert") and "BitPredictNoNewData" in decision.detail
    assert state == ReceiverState()  # nothing marked
    resolved_inside = note("firing", GROUP, alert(status="resolved"))  # a firing group listing a resolved alert
    assert decide(resolved_inside, ReceiverState(), NOW, DAY)[0].reason == "no_rerun_alert"


def test_a_running_rerun_holds_the_next_start() -> None:
    decision, _ = decide(note(), ReceiverState(), NOW, DAY, busy=True)
    assert (decision.start, decision.reason) == (False, "busy")


# ---------------------------------------------------------------------------------------------------------
# the receiver: state on disk, the rerun in the background, records
# ---------------------------------------------------------------------------------------------------------


class Reruns:
    """A rerun callable that records its calls and waits for a release (to hold one 'running')."""

    def __init__(self, ok: bool = True) -> None:
        self.calls: list[list[str]] = []
        self.ok = ok
        self.release = threading.Event()
        self.release.set()

    def __call__(self, reasons: list[str]) -> dict[str, Any]:
        self.calls.append(reasons)
        self.release.wait(10)
        return {"mode": "test", "run_id": f"run-{len(self.calls)}", "ok": self.ok}


def records(receiver: AlertReceiver) -> list[dict[str, Any]]:
    return [json.loads(line) for line in receiver.log_path.read_text().splitlines()]


def test_the_receiver_starts_one_rerun_persists_it_and_records_each_decision(tmp_path: Path) -> None:
    reruns = Reruns()
    receiver = AlertReceiver(reruns, tmp_path / "alerts", DAY, clock=lambda: NOW)
    body = json.dumps(payload()).encode()
    assert receiver.handle(body) == (200, {"decision": "started", "detail": "rerun for BitPredictCalibrationBroken"})
    assert receiver.wait_idle(10)
    # a restart reads the state: the repeat is still a repeat
    restarted = AlertReceiver(reruns, tmp_path / "alerts", DAY, clock=lambda: NOW + timedelta(hours=1))
    assert restarted.handle(body)[1]["decision"] == "duplicate_group"
    assert reruns.calls == [["alert BitPredictCalibrationBroken"]]
    events = [(r["event"], r.get("reason")) for r in records(restarted)]
    assert events == [("received", None), ("started", "started"), ("finished", None),
                      ("received", None), ("skipped", "duplicate_group")]  # fmt: skip
    assert records(restarted)[2]["ok"] is True and records(restarted)[2]["run_id"] == "run-1"


def test_a_failed_rerun_gives_its_slot_back(tmp_path: Path) -> None:
    reruns = Reruns(ok=False)
    receiver = AlertReceiver(reruns, tmp_path, DAY, clock=lambda: NOW)
    body = json.dumps(payload()).encode()
    assert receiver.handle(body)[1]["decision"] == "started" and receiver.wait_idle(10)
    assert ReceiverState.load(str(tmp_path / "state.json")) == ReceiverState()
    assert receiver.handle(body)[1]["decision"] == "started" and receiver.wait_idle(10)  # the repeat retries
    assert len(reruns.calls) == 2


def test_one_rerun_at_a_time_and_the_drift_state_is_read(tmp_path: Path) -> None:
    reruns = Reruns()
    reruns.release.clear()
    receiver = AlertReceiver(reruns, tmp_path, timedelta(0), clock=lambda: NOW)
    assert receiver.handle(json.dumps(payload()).encode())[1]["decision"] == "started"
    other = payload("firing", "other", alert("BitPredictInputDrift"))
    assert receiver.handle(json.dumps(other).encode())[1]["decision"] == "busy"
    reruns.release.set()
    assert receiver.wait_idle(10) and len(reruns.calls) == 1
    drift_state = tmp_path / "drift-state.json"
    drift_state.write_text(json.dumps({"last_trigger_at": (NOW - timedelta(hours=1)).isoformat()}))
    held = AlertReceiver(reruns, tmp_path / "2", DAY, drift_state_uri=str(drift_state), clock=lambda: NOW)
    assert held.handle(json.dumps(payload()).encode())[1]["decision"] == "cooldown"


# ---------------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Reruns, AlertReceiver]]:
    reruns = Reruns()
    receiver = AlertReceiver(reruns, tmp_path, DAY)
    httpd = make_server(receiver, "127.0.0.1", 0, token="s3cret")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", reruns, receiver
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_http_answers_400_401_404_and_counts(served: tuple[str, Reruns, AlertReceiver]) -> None:
    url, reruns, receiver = served
    auth = {"Authorization": "Bearer s3cret"}
    assert httpx.post(f"{url}/alerts", json=payload(), timeout=5).status_code == 401
    bad = httpx.post(f"{url}/alerts", content=b"{", headers=auth, timeout=5)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    assert httpx.post(f"{url}/other", json=payload(), headers=auth, timeout=5).status_code == 404
    ok = httpx.post(f"{url}/alerts", json=payload(), headers=auth, timeout=5)
    assert ok.status_code == 200 and ok.json()["decision"] == "started"
    assert receiver.wait_idle(10) and len(reruns.calls) == 1
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'bitpredict_alert_receiver_notifications_total{status="invalid"} 1.0' in metrics
    assert 'bitpredict_alert_receiver_decisions_total{decision="started"} 1.0' in metrics
    assert 'bitpredict_alert_receiver_reruns_total{outcome="ok"} 1.0' in metrics
    assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok", "rerun_running": False}
