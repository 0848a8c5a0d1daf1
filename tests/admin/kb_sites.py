"""A knowledge base for the dashboard's tests: two small documents in a folder and, when
asked for, a web source whose page is served only when the test says so (a sync that stays
running as long as a test needs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class SlowSite:
    """A web source's site whose /slow page is served only once `release` is called, so a
    sync of it stays running as long as a test needs; /broken answers 500."""

    url: str
    gate: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.gate.set()


@contextmanager
def slow_site() -> Iterator[SlowSite]:
    gate = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/slow":
                gate.wait(30)
                body = b"<html><head><title>Slow page</title></head><body><h1>Refunds</h1>" \
                       b"<p>Refunds take five days.</p></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/broken":
                self.send_error(500)
            else:
                self.send_error(404)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site = SlowSite(f"http://127.0.0.1:{server.server_address[1]}", gate)
    try:
        yield site
    finally:
        gate.set()
        server.shutdown()
        server.server_close()


def kb_config(tmp_path: Path, site: SlowSite | None) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "reset.md").write_text("# Reset your password\n\nOpen Settings, then Security.\n",
                                   encoding="utf-8")
    (docs / "plans.md").write_text("# Plans\n\nTeam and Enterprise.\n", encoding="utf-8")
    web = "" if site is None else (
        "    - name: site\n      kind: web\n"
        f"      urls: ['{site.url}/slow', '{site.url}/broken']\n"
        "      scope: ['slack:*']\n")
    # Not bothub.yaml, which `admin_world` writes its own default to.
    path = tmp_path / "kb.yaml"
    path.write_text("escalation:\n  triggers: {nothing_found: false}\n"
                    "knowledge:\n  sources:\n"
                    f"    - name: docs\n      kind: folder\n      path: {docs}\n{web}",
                    encoding="utf-8")
    return path
