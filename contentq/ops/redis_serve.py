"""`contentq redis serve`: the embedded Valkey in the foreground, for supervisor, stopped after the workers.

supervisor's `stop all` signals every program at once (its stopAllProcesses does not wait between
priorities; only `shutdown` stops the groups one after the other). A Valkey that exits at once leaves every
worker unable to unregister ("stopped without unregistering from Redis"), and RQ lists them for 8 minutes
after the next start. So Valkey runs as a child of this process: on TERM (or INT) it keeps serving until no
worker of this machine is registered any more (they unregister as they stop), at most the longest time
supervisor gives a worker to stop, then it is shut down with SHUTDOWN (the append-only file flushed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from types import FrameType

import redis

from contentq.runtime.redis import NO_RETRY, EmbeddedServer, embedded_server
from contentq.settings import Settings

log = logging.getLogger("contentq.redis")

POLL_SECONDS = 0.2
"""While stopping: how often the workers still registered are counted."""


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def registered_workers(server: EmbeddedServer) -> list[str]:
    """Workers registered in this Valkey whose process still runs on this machine (a killed worker's
    registration is nobody to wait for)."""
    from rq import Worker  # only when stopping: the process that waits on Valkey stays small

    conn = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=2, retry=NO_RETRY)
    try:
        workers = Worker.all(connection=conn)
    except redis.RedisError:
        return []
    finally:
        conn.close()
    host = socket.gethostname()
    return [w.name for w in workers if w.hostname == host and w.pid and _process_exists(int(w.pid))]


def stop_grace(settings: Settings) -> int:
    """The longest supervisor waits for a worker to stop (its stopwaitsecs): Valkey waits no longer for them."""
    from contentq.ops.supervisor import worker_groups

    return max(group.stopwaitsecs for group in worker_groups(settings))


def _await_workers(server: EmbeddedServer, grace: float) -> list[str]:
    deadline = time.monotonic() + grace
    left = registered_workers(server)
    if left:
        log.info("stopping: waiting for %d worker(s) to unregister first (at most %.0f s)", len(left), grace)
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        left = registered_workers(server)
    return left


def serve(settings: Settings) -> int:
    """Run Valkey until it exits by itself (its exit code: supervisor starts it again) or this process is asked
    to stop (0, once the workers are gone and Valkey has shut down)."""
    server = embedded_server(settings)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    if server.ping():
        # A CLI command started it in the background; supervisor takes it over (data persists in the AOF).
        server.stop()
    if server.socket.exists():
        server.socket.unlink()
    stopping = threading.Event()
    wake = threading.Event()
    """Set by a stop signal or by Valkey's exit: this process sleeps until then, with no wake-ups of its own."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    child = subprocess.Popen(server.server_args(daemonize=False))

    def await_exit() -> None:
        child.wait()
        wake.set()

    threading.Thread(target=await_exit, name="valkey-exit", daemon=True).start()
    while not wake.wait(60.0):
        pass
    if child.poll() is not None and not stopping.is_set():
        log.error("Valkey exited with status %s", child.returncode)
        return child.returncode or 1
    left = _await_workers(server, stop_grace(settings))
    if left:
        log.warning("stopping Valkey with %d worker(s) still registered: %s", len(left), ", ".join(left))
    server.stop()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
    return 0
