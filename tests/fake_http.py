"""The base of the tests' fake platforms (X, Instagram): a real HTTP server on 127.0.0.1 whose state lives in a
SQLite file, so that what the platform saw survives the worker processes killed around it (and the server
itself: a new server on the same file carries on).

Faults are scripted in the file too (`script`), so a test can arm them for worker processes: `status` answers
the next N calls of an endpoint with an error, `pass` lets N calls through untouched (to aim a later fault),
`hang_before` makes the next call sleep and then drop the request (no effect), `hang_after` makes it sleep after
its effect is committed (both write a marker file first, so the test knows when to kill the worker).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FAULTS = """
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, kind TEXT NOT NULL, remaining INTEGER NOT NULL,
    status INTEGER, body TEXT, headers TEXT, seconds REAL, marker TEXT
);
CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT, method TEXT, at REAL);
"""


class Reply(Exception):  # noqa: N818 - control flow of the fake's handlers
    """Answer the request with this status, body and headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        self.method = method
        self.path = parts.path
        self.url = f"http://{handler.headers.get('Host')}{handler.path}"
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.headers = handler.headers
        length = int(handler.headers.get("Content-Length") or 0)
        self.raw = handler.rfile.read(length) if length else b""
        self.form: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        self.json: Any = None
        ctype = handler.headers.get("Content-Type") or ""
        if ctype.startswith("application/json") and self.raw:
            self.json = json.loads(self.raw)
        elif ctype.startswith("application/x-www-form-urlencoded"):
            self.form = dict(parse_qsl(self.raw.decode(), keep_blank_values=True))
        elif ctype.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self.raw)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename():
                    self.files[str(name)] = payload
                else:
                    self.form[str(name)] = payload.decode()

    def param(self, name: str) -> str | None:
        return self.form.get(name, self.query.get(name))


class FakePlatform:
    """Subclasses set SCHEMA and implement `route(request, conn) -> (status, body, headers)`."""

    SCHEMA = ""

    def __init__(self, path: Path, *, latency: float = 0.0) -> None:
        self.path = path
        self.latency = latency
        """Each POST takes up to this many seconds, half before its effect and half after (widens the window a
        random kill of the client can hit, as the chaos bench wants)."""
        with self.connect() as conn:
            conn.executescript(FAULTS + self.SCHEMA)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.row_factory = sqlite3.Row
        return conn

    # Serving -------------------------------------------------------------------------------------------

    def start(self) -> str:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

            def _serve(self, method: str) -> None:
                request = Request(self, method)
                try:
                    status, body, headers = platform.handle(request)
                except Reply as reply:
                    status, body, headers = reply.status, reply.body, reply.headers
                headers = dict(headers)
                # A body of bytes is sent as it is (a file's content), JSON otherwise.
                ctype = headers.pop("Content-Type", "application/octet-stream" if isinstance(body, bytes) else
                                    "application/json; charset=utf-8")  # fmt: skip
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client (a killed worker) is gone: what happened is in the file

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        conn = self.connect()
        try:
            endpoint = self.endpoint(request)
            conn.execute(
                "INSERT INTO calls (endpoint, method, at) VALUES (?, ?, ?)", (endpoint, request.method, time.time())
            )
            fault = self._take_fault(conn, endpoint)
            if fault is not None and fault["kind"] == "status":
                headers = json.loads(fault["headers"] or "{}")
                if fault["seconds"] is not None:  # a rate limit reset this far ahead
                    headers["x-rate-limit-reset"] = str(int(time.time() + fault["seconds"]))
                raise Reply(int(fault["status"]), json.loads(fault["body"] or "{}"), headers)
            if fault is not None and fault["kind"] == "hang_before":  # the request is lost: no effect at all
                self._hang(fault)
                raise Reply(503, {"title": "Service Unavailable", "status": 503, "detail": "the request was dropped"})
            if self.latency and request.method == "POST":
                time.sleep(random.uniform(0, self.latency / 2))
            result = self.route(request, conn)
            if self.latency and request.method == "POST":
                time.sleep(random.uniform(0, self.latency / 2))
            if fault is not None and fault["kind"] == "hang_after":
                self._hang(fault)
            return result
        finally:
            conn.close()

    def _hang(self, fault: sqlite3.Row) -> None:
        if fault["marker"]:
            Path(fault["marker"]).write_text("hung")
        time.sleep(float(fault["seconds"] or 3600))

    def _take_fault(self, conn: sqlite3.Connection, endpoint: str) -> sqlite3.Row | None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT * FROM faults WHERE endpoint = ? AND remaining > 0 ORDER BY id LIMIT 1", (endpoint,)
            ).fetchone()
            if row is not None:
                conn.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return row

    # Scripting (from the tests, any process) ----------------------------------------------------------------

    def script(
        self,
        endpoint: str,
        kind: str,
        *,
        times: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        seconds: float | None = None,
        marker: Path | None = None,
    ) -> None:
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO faults (endpoint, kind, remaining, status, body, headers, seconds, marker)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (endpoint, kind, times, status, json.dumps(body) if body is not None else None,
                 json.dumps(headers or {}), seconds, str(marker) if marker else None),
            )  # fmt: skip

    def calls(self, endpoint: str | None = None) -> int:
        with self.connect() as conn:
            if endpoint is None:
                return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM calls WHERE endpoint = ?", (endpoint,)).fetchone()[0])

    def endpoint(self, request: Request) -> str:
        raise NotImplementedError

    def route(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError
