"""Alertmanager → rerun: a webhook receiver that turns a firing ``action="rerun"`` alert group into one rerun.

Why a receiver of its own: Prometheus decides *that* something is wrong (``monitoring/prometheus/rules.yaml``),
Alertmanager decides *who hears it* (``monitoring/alertmanager/alertmanager.yml``), and this module decides
*whether a rerun starts*. Alertmanager repeats a notification while the alert fires and may send several groups
at once, so the decision must be idempotent: at most one rerun per firing group (its ``groupKey``) and none
within the cooldown of the last rerun, whoever started it (this receiver, or the drift check — its state file is
read, never written). The rerun is the same one the drift check starts: ``command_trigger`` running
``python -m pipelines.rerun`` (a KFP run when ``KFP_HOST`` is set, the local rerun otherwise).

The decision (``decide``) is a pure function of the notification, the persisted receiver state and the clock,
so it is tested without a server; ``AlertReceiver`` applies it under a lock, persists the state before the
rerun starts (a crash cannot start a second one), answers at once and runs the rerun in a background thread,
one at a time. A rerun that failed gives its slot back (as the drift check does), so the next repeat
notification tries again. Every decision is one JSON line in ``decisions.jsonl`` and a Prometheus counter.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from bitpredict import storage
from bitpredict.errors import BitPredictError

log = logging.getLogger(__name__)

RERUN_LABEL = ("action", "rerun")  # the label a rule sets on alerts whose fix is a rerun (rules.yaml)
MAX_BODY_BYTES = 1 << 20  # Alertmanager's groups are a few kB; anything bigger is not a notification
ALERTS_PATH = "/alerts"

Rerun = Callable[[list[str]], dict[str, Any]]  # command_trigger's shape: reasons in, outcome (with "ok") out
SkipReason = Literal["resolved", "no_rerun_alert", "duplicate_group", "busy", "cooldown"]


class PayloadError(BitPredictError, ValueError):
    """The body is not an Alertmanager webhook notification (version 4); the message says what is wrong."""


# --------------------------------------------------------------------------------------------
# the notification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    starts_at: datetime


@dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    alerts: tuple[Alert, ...]

    def rerun_alerts(self) -> list[Alert]:
        """The firing alerts whose rule asks for a rerun (a group may also list alerts that resolved)."""
        name, value = RERUN_LABEL
        return [a for a in self.alerts if a.status == "firing" and a.labels.get(name) == value]

    def alertnames(self) -> list[str]:
        return sorted({a.labels.get("alertname", "?") for a in self.alerts})


def _timestamp(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise PayloadError(f"{where} must be an RFC 3339 time string")
    try:  # Alertmanager writes nanoseconds and 'Z'; Python 3.11 reads both (to microseconds)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{where} is not an RFC 3339 time: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_notification(body: bytes) -> Notification:
    """Read and check an Alertmanager webhook body (payload version 4); raise ``PayloadError`` saying why not."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"the body is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise PayloadError("the body must be a JSON object (an Alertmanager webhook notification)")
    if doc.get("version") != "4":
        raise PayloadError(f"unsupported webhook payload version {doc.get('version')!r}: this receiver reads '4'")
    group_key = doc.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        raise PayloadError("groupKey must be a non-empty string")
    status = doc.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"status must be 'firing' or 'resolved', not {status!r}")
    raw_alerts = doc.get("alerts")
    if not isinstance(raw_alerts, list):
        raise PayloadError("alerts must be a list")
    alerts = []
    for i, raw in enumerate(raw_alerts):
        if not isinstance(raw, dict):
            raise PayloadError(f"alerts[{i}] must be an object")
        if raw.get("status") not in ("firing", "resolved"):
            raise PayloadError(f"alerts[{i}].status must be 'firing' or 'resolved'")
        labels = raw.get("labels")
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise PayloadError(f"alerts[{i}].labels must be an object of strings")
        alerts.append(Alert(raw["status"], dict(labels), _timestamp(raw.get("startsAt"), f"alerts[{i}].startsAt")))
    return Notification(group_key, status, tuple(alerts))


# --------------------------------------------------------------------------------------------
# the decision
# --------------------------------------------------------------------------------------------


@dataclass
class ReceiverState:
    """What survives a restart: the last rerun this receiver started, and the groups it started one for.

    ``groups`` maps a groupKey to ``{"started_at", "alerts_since"}`` (the newest ``startsAt`` among the alerts
    that started it): a later notification of the group is a repeat unless one of its alerts started after that —
    an alert that resolved and fired again while a resolved notification was lost."""

    last_started_at: str | None = None
    groups: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, uri: str) -> ReceiverState:
        if not storage.exists(uri):
            return cls()
        doc = json.loads(storage.read_text(uri))
        return cls(doc.get("last_started_at"), dict(doc.get("groups") or {}))

    def save(self, uri: str) -> None:
        storage.write_text(uri, json.dumps(asdict(self), indent=2, sort_keys=True))


@dataclass(frozen=True)
class Decision:
    start: bool
    reason: SkipReason | Literal["started"]
    detail: str


def decide(
    note: Notification,
    state: ReceiverState,
    now: datetime,
    cooldown: timedelta,
    busy: bool = False,
    other_trigger_at: datetime | None = None,
) -> tuple[Decision, ReceiverState]:
    """Whether this notification starts a rerun, and the state after it. Pure: no clock, no files.

    ``other_trigger_at``: the last rerun another trigger started (the drift check's), which the cooldown counts
    too. A skipped group is not marked, so Alertmanager's next repeat asks again (after the cooldown it starts)."""
    groups = dict(state.groups)
    if note.status == "resolved":
        groups.pop(note.group_key, None)
        return Decision(False, "resolved", "the group resolved: nothing to start"), ReceiverState(
            state.last_started_at, groups
        )
    alerts = note.rerun_alerts()
    if not alerts:
        detail = f"no firing alert labelled {RERUN_LABEL[0]}={RERUN_LABEL[1]} ({', '.join(note.alertnames())})"
        return Decision(False, "no_rerun_alert", detail), state
    newest = max(a.starts_at for a in alerts)
    seen = groups.get(note.group_key)
    if seen and newest <= datetime.fromisoformat(seen["alerts_since"]):
        return Decision(
            False, "duplicate_group", f"a rerun already started for this group at {seen['started_at']}"
        ), state
    if busy:
        return Decision(False, "busy", "a rerun is still running (one at a time)"), state
    last = [(datetime.fromisoformat(state.last_started_at), "this receiver")] if state.last_started_at else []
    last += [(other_trigger_at, "the drift check")] if other_trigger_at else []
    if last:
        when, who = max(last)
        if now < when + cooldown:
            detail = (
                f"cooldown: {who} started a rerun at {when.isoformat()}; next one from {(when + cooldown).isoformat()}"
            )
            return Decision(False, "cooldown", detail), state
    groups[note.group_key] = {"started_at": now.isoformat(), "alerts_since": newest.isoformat()}
    names = ", ".join(sorted({a.labels.get("alertname", "?") for a in alerts}))
    return Decision(True, "started", f"rerun for {names}"), ReceiverState(now.isoformat(), groups)


def give_back(state: ReceiverState, group_key: str, started_at: str, previous_start: str | None) -> ReceiverState:
    """A rerun that failed does not use up its group or the cooldown, unless a later start replaced them."""
    groups = dict(state.groups)
    if (groups.get(group_key) or {}).get("started_at") == started_at:
        groups.pop(group_key)
    last = previous_start if state.last_started_at == started_at else state.last_started_at
    return ReceiverState(last, groups)


# --------------------------------------------------------------------------------------------
# the receiver: decisions under a lock, the rerun in the background, a log and counters
# --------------------------------------------------------------------------------------------


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.notifications = Counter(
            "bitpredict_alert_receiver_notifications", "Webhook notifications by status (invalid: refused with 400)",
            ["status"], registry=self.registry,
        )  # fmt: skip
        self.decisions = Counter(
            "bitpredict_alert_receiver_decisions", "Decisions on firing/resolved notifications", ["decision"],
            registry=self.registry,
        )  # fmt: skip
        self.reruns = Counter("bitpredict_alert_receiver_reruns", "Finished reruns by outcome", ["outcome"],
                              registry=self.registry)  # fmt: skip
        self.running = Gauge("bitpredict_alert_receiver_rerun_running", "1 while a rerun runs", registry=self.registry)
        self.last_start = Gauge(
            "bitpredict_alert_receiver_last_rerun_start_timestamp_seconds", "When the last rerun started",
            registry=self.registry,
        )  # fmt: skip


class AlertReceiver:
    """Applies ``decide`` to each notification, persists the state, starts the rerun, records everything.

    ``state_dir`` (local) holds ``state.json`` and ``decisions.jsonl``; ``drift_state_uri`` is the drift check's
    state, whose ``last_trigger_at`` the cooldown counts (read only; absent or unreadable: ignored, logged)."""

    def __init__(
        self,
        rerun: Rerun,
        state_dir: str | Path,
        cooldown: timedelta,
        drift_state_uri: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rerun = rerun
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_uri = str(self.state_dir / "state.json")
        self.log_path = self.state_dir / "decisions.jsonl"
        self.cooldown = cooldown
        self.drift_state_uri = drift_state_uri
        self.clock = clock
        self.metrics = _Metrics()
        self._lock = threading.Lock()  # one decision at a time: read state, decide, write state, start
        self._log_lock = threading.Lock()
        self._worker: threading.Thread | None = None

    # -- records ---------------------------------------------------------------------------------
    def record(self, event: str, **fields: Any) -> None:
        """One JSON line per event (received, started, skipped, finished, invalid), and the same in the log."""
        entry = {"at": self.clock().isoformat(), "event": event, **fields}
        with self._log_lock, self.log_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, default=str) + "\n")
        log.info("alert receiver: %s", event, extra={k: v for k, v in fields.items() if k != "outcome"})

    def _drift_trigger_at(self) -> datetime | None:
        if not self.drift_state_uri:
            return None
        try:
            if not storage.exists(self.drift_state_uri):
                return None
            value = json.loads(storage.read_text(self.drift_state_uri)).get("last_trigger_at")
            return datetime.fromisoformat(value) if value else None
        except Exception as exc:  # the drift state is a courtesy: unreadable means "no drift rerun known"
            log.warning("alert receiver: the drift state cannot be read", extra={"error": str(exc)[:200]})
            return None

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    # -- the entry point -------------------------------------------------------------------------
    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """One webhook call: (HTTP status, JSON answer). Never waits for the rerun."""
        try:
            note = parse_notification(body)
        except PayloadError as exc:
            self.metrics.notifications.labels(status="invalid").inc()
            self.record("invalid", error=str(exc))
            return 400, {"error": str(exc)}
        self.metrics.notifications.labels(status=note.status).inc()
        self.record("received", group_key=note.group_key, status=note.status, alertnames=note.alertnames(),
                    alerts=len(note.alerts))  # fmt: skip
        other = self._drift_trigger_at()
        with self._lock:
            previous = ReceiverState.load(self.state_uri)
            decision, state = decide(note, previous, self.clock(), self.cooldown, self.busy, other)
            if state != previous:
                state.save(self.state_uri)  # before the rerun starts: a crash cannot start a second one
            self.metrics.decisions.labels(decision=decision.reason).inc()
            event = "started" if decision.start else "skipped"
            self.record(event, group_key=note.group_key, reason=decision.reason, detail=decision.detail)
            if decision.start:
                assert state.last_started_at is not None
                reasons = [f"alert {name}" for name in note.alertnames()]
                self._worker = threading.Thread(
                    target=self._run, args=(reasons, note.group_key, state.last_started_at, previous.last_started_at),
                    name="alert-rerun", daemon=True,
                )  # fmt: skip
                self.metrics.running.set(1)
                self.metrics.last_start.set(datetime.fromisoformat(state.last_started_at).timestamp())
                self._worker.start()
        return 200, {"decision": decision.reason, "detail": decision.detail}

    def _run(self, reasons: list[str], group_key: str, started_at: str, previous_start: str | None) -> None:
        try:
            outcome = self.rerun(reasons)
        except Exception as exc:  # command_trigger never raises; any other rerun callable might
            outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        ok = bool(outcome.get("ok"))
        if not ok:
            with self._lock:
                state = ReceiverState.load(self.state_uri)
                state_after = give_back(state, group_key, started_at, previous_start)
                if state_after != state:
                    state_after.save(self.state_uri)
        self.metrics.reruns.labels(outcome="ok" if ok else "failed").inc()
        self.metrics.running.set(0)
        self.record("finished", group_key=group_key, ok=ok, run_id=outcome.get("run_id"), outcome=outcome)

    def wait_idle(self, timeout_s: float) -> bool:
        """For tests and shutdown: wait for the running rerun, if any; True when none runs."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout_s)
        return not self.busy


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def make_server(receiver: AlertReceiver, host: str, port: int, token: str | None = None) -> ThreadingHTTPServer:
    """``POST /alerts`` (Alertmanager's webhook), ``GET /metrics``, ``GET /healthz``. With a ``token``, a POST
    needs ``Authorization: Bearer <token>`` (Alertmanager's ``http_config.authorization``): whoever can reach
    the port could otherwise start reruns."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "bitpredict-alert-receiver"

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, doc: dict[str, Any]) -> None:
            self._answer(status, json.dumps(doc).encode())

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(receiver.metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._json(200, {"status": "ok", "rerun_running": receiver.busy})
            else:
                self._json(404, {"error": f"no route GET {self.path}; POST {ALERTS_PATH}, GET /metrics, /healthz"})

        def do_POST(self) -> None:
            if self.path != ALERTS_PATH:
                self._json(404, {"error": f"no route POST {self.path}; Alertmanager posts to {ALERTS_PATH}"})
                return
            if token is not None:
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    self._json(401, {"error": "missing or wrong bearer token"})
                    return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._json(411, {"error": "Content-Length is required"})
                return
            if length > MAX_BODY_BYTES:
                self._json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                return
            status, doc = receiver.handle(self.rfile.read(length))
            self._json(status, doc)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("alert receiver http: " + format, *args)

    return ThreadingHTTPServer((host, port), Handler)


def serve(receiver: AlertReceiver, host: str, port: int, token: str | None = None) -> None:
    """Serve until interrupted; a running rerun is left to finish (its thread is a daemon: SIGTERM ends it)."""
    httpd = make_server(receiver, host, port, token)
    if token is None:
        log.warning("alert receiver: no token set; anyone who can reach the port can start reruns")
    log.info("alert receiver listening", extra={"host": host, "port": httpd.server_address[1],
                                                "cooldown_h": receiver.cooldown.total_seconds() / 3600})  # fmt: skip
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
