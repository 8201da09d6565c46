"""A real headless Chromium driven over the DevTools protocol (websockets): open a page, wait until the
page's own JavaScript has rendered what a test waits for, read its text, take a screenshot.

Debian's ``chromium`` is the browser; nothing is downloaded. Used by the UI tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from itertools import count
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        assert CHROMIUM, "chromium is not installed"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # ignore_cleanup_errors: a last resort only — close() stops every chromium process before removing it
        self.profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
             f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=1) as reply:
                    page = next(t for t in json.load(reply) if t["type"] == "page")
                break
            except (OSError, StopIteration):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        self._ids = count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        self.socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def text(self) -> str:
        result = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
        return result["result"].get("value", "")

    def count(self, selector: str) -> int:
        expression = f"document.querySelectorAll({json.dumps(selector)}).length"
        return int(self.call("Runtime.evaluate", expression=expression)["result"].get("value", 0))

    def open(self, url: str, wait_for: list[str], timeout: float = 60) -> str:
        """Navigate and wait until every string in ``wait_for`` is in the page's text; returns the text."""
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if all(w in text for w in wait_for):
                time.sleep(1.5)  # let charts finish drawing
                return self.text()
            time.sleep(0.5)
        raise TimeoutError(f"{url}: {wait_for} never appeared; page says: {self.text()[:500]!r}")

    def screenshot(self, path: Path) -> Path:
        """The window as it is. Not beyond the viewport: Streamlit scrolls inside its own view, so there is nothing
        more to capture, and the resize that capture makes slides its sidebar half out in the picture."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Stop chromium and every process it started (renderers, crash handler), then remove its profile.

        Terminating the main process alone leaves helpers that still write into the profile for a moment, and
        removing the folder then fails with "Directory not empty".
        """
        try:
            self.socket.close()
        finally:
            group = self.process.pid  # its own session: the group id is its pid
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _group_alive(group):
                    self.process.poll()  # reap the main process so the group can empty
                    time.sleep(0.1)
                if not _group_alive(group):
                    break
            self.process.wait(timeout=10)
            self.profile.cleanup()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
