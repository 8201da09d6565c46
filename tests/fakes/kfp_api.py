"""A Kubeflow Pipelines API server (v2beta1 REST shapes) on 127.0.0.1, enough for ``kfp.Client`` to upload a
pipeline, add versions, find or create an experiment, and create runs and recurring runs.

It keeps what it was sent (pipelines, versions with their uploaded YAML, experiments, runs) so tests can
check the calls; unknown paths answer 404 as the real server does, and a bad upload answers 400.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

PREFIX = "/apis/v2beta1"


@dataclass
class KfpState:
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    recurring_runs: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)


def _filter_name(query: dict[str, list[str]]) -> str | None:
    """The display name a v2beta1 ``filter`` predicate asks for (``EQUALS`` on ``name``/``display_name``)."""
    if "filter" not in query:
        return None
    for predicate in json.loads(query["filter"][0]).get("predicates", []):
        if predicate.get("key") in ("name", "display_name"):
            return predicate.get("string_value") or predicate.get("stringValue")
    return None


class FakeKfp:
    def __init__(self) -> None:
        self.state = KfpState()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- handlers ---------------------------------------------------------------------------------
    def _upload(self, query: dict[str, list[str]], body: bytes, content_type: str, version_of: str | None) -> tuple:
        message = email.message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
        )
        files = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in (message.iter_parts() if message.is_multipart() else [])
        }
        if "uploadfile" not in files:
            return 400, {"error": "no uploadfile in the multipart body", "code": 3}
        text = files["uploadfile"].decode()
        try:
            # the pipeline spec, then (as KFP accepts it) a platform spec: kfp-kubernetes' timeouts and volumes
            spec, *platform = list(yaml.safe_load_all(text))
            assert "pipelineInfo" in spec and "root" in spec
            assert all("platforms" in doc for doc in platform)
        except Exception:
            return 400, {"error": "invalid pipeline spec", "code": 3}
        name = (query.get("name") or query.get("display_name") or [spec["pipelineInfo"]["name"]])[0]
        if version_of is None:
            if any(p["display_name"] == name for p in self.state.pipelines.values()):
                return 409, {"error": f"pipeline {name} already exists", "code": 6}
            pipeline_id = str(uuid.uuid4())
            self.state.pipelines[pipeline_id] = {"pipeline_id": pipeline_id, "display_name": name}
        else:
            pipeline_id = version_of
            if pipeline_id not in self.state.pipelines:
                return 404, {"error": f"pipeline {pipeline_id} not found", "code": 5}
        version_id = str(uuid.uuid4())
        self.state.versions[version_id] = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": version_id,
            "display_name": name,
            "spec": spec,
        }
        if version_of is None:
            return 200, self.state.pipelines[pipeline_id]
        return 200, {k: v for k, v in self.state.versions[version_id].items() if k != "spec"}

    def handle(self, method: str, raw_path: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        parsed = urlparse(raw_path)
        path, query = parsed.path, parse_qs(parsed.query)
        self.state.calls.append((method, path))
        if method == "GET" and path == f"{PREFIX}/healthz":
            return 200, {"multi_user": False, "commit_sha": "fake", "tag_name": "2.5.0"}
        if method == "GET" and path == f"{PREFIX}/pipelines":
            name = _filter_name(query)
            found = [p for p in self.state.pipelines.values() if name is None or p["display_name"] == name]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if method == "POST" and path == f"{PREFIX}/pipelines/upload":
            return self._upload(query, body, content_type, None)
        if method == "POST" and path == f"{PREFIX}/pipelines/upload_version":
            return self._upload(query, body, content_type, (query.get("pipelineid") or [""])[0])
        if method == "GET" and path == f"{PREFIX}/experiments":
            name = _filter_name(query)
            found = [e for e in self.state.experiments.values() if name is None or e["display_name"] == name]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if method == "POST" and path == f"{PREFIX}/experiments":
            document = json.loads(body)
            experiment_id = str(uuid.uuid4())
            self.state.experiments[experiment_id] = {**document, "experiment_id": experiment_id}
            return 200, self.state.experiments[experiment_id]
        if method == "POST" and path in (f"{PREFIX}/runs", f"{PREFIX}/recurringruns"):
            document = json.loads(body)
            reference = document.get("pipeline_version_reference") or {}
            if reference.get("pipeline_version_id") not in self.state.versions:
                return 404, {"error": "pipeline version not found", "code": 5}
            if document.get("experiment_id") not in self.state.experiments:
                return 404, {"error": "experiment not found", "code": 5}
            if path.endswith("/runs"):
                run = {**document, "run_id": str(uuid.uuid4()), "state": "PENDING"}
                self.state.runs.append(run)
                return 200, run
            job = {**document, "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED"}
            self.state.recurring_runs.append(job)
            return 200, job
        return 404, {"error": f"{method} {path} not found", "code": 5}

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> FakeKfp:
        fake = self
        lock = threading.Lock()

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with lock:
                    status, document = fake.handle(method, self.path, body, self.headers.get("Content-Type", ""))
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, *_args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
