"""The Redis connection: CONTENTQ_REDIS_URL, or a private embedded Valkey on a unix socket under CONTENTQ_HOME."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from contentq.errors import RedisUnavailableError
from contentq.redact import redact
from contentq.runtime import valkey_keeper
from contentq.runtime.valkey_keeper import find_server_binary as find_server_binary  # tests patch it here
from contentq.settings import Settings

NO_RETRY = Retry(NoBackoff(), 0)
"""redis-py retries for seconds by default; a ping or a SHUTDOWN must answer at once."""


@dataclass(frozen=True)
class EmbeddedServer:
    """Paths of the embedded server of one CONTENTQ_HOME."""

    data_dir: Path

    @property
    def socket(self) -> Path:
        return valkey_keeper.socket_path(self.data_dir)

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "valkey.pid"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "valkey.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def server_args(self, daemonize: bool) -> list[str]:
        """The command line the supervised keeper runs too (contentq.runtime.valkey_keeper)."""
        binary = find_server_binary()
        if binary is None:
            raise RedisUnavailableError(valkey_keeper.NO_SERVER)
        return valkey_keeper.server_args(binary, self.data_dir, daemonize=daemonize)

    def ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1, retry=NO_RETRY).ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 10.0) -> None:
        """Start the daemon unless it runs; a file lock makes concurrent starters wait for one start."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.ping():
            return
        with open(self.data_dir / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.ping():
                return
            if self.socket.exists():
                self.socket.unlink()  # left by a server that died
            result = subprocess.run(self.server_args(daemonize=True), capture_output=True, text=True)
            if result.returncode != 0:
                raise RedisUnavailableError(
                    f"the embedded Valkey did not start: {(result.stderr or result.stdout).strip()[:300]} "
                    f"(see {self.logfile})"
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.ping():
                    return
                time.sleep(0.05)
        raise RedisUnavailableError(f"the embedded Valkey did not answer within {timeout:g} s; see {self.logfile}")

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> bool:
        """SHUTDOWN (the append-only file is flushed); False when it was not running."""
        if not self.ping():
            return False
        try:
            # retry=NO_RETRY: redis-py would otherwise retry SHUTDOWN for seconds after the server hangs up.
            redis.Redis(unix_socket_path=str(self.socket), retry=NO_RETRY).shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        except redis.RedisError:
            pid = self.pid()
            if pid:
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.ping():
            time.sleep(0.05)
        return True


def embedded_server(settings: Settings) -> EmbeddedServer:
    return EmbeddedServer(settings.redis_dir)


def describe_redis(settings: Settings) -> str:
    if settings.redis_url:
        return redact(settings.redis_url)
    return f"embedded Valkey at {embedded_server(settings).socket}"


def connect(settings: Settings, *, start_embedded: bool = True) -> redis.Redis:
    """A checked connection; one clear line when Redis cannot be had."""
    if settings.redis_url:
        try:
            conn = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, health_check_interval=30)
            conn.ping()
        except (redis.RedisError, ValueError) as exc:
            raise RedisUnavailableError(
                f"cannot reach Redis at {redact(settings.redis_url)}: {redact(exc)}; "
                "start it or fix CONTENTQ_REDIS_URL (unset it to use the embedded server)"
            ) from None
        return conn
    server = embedded_server(settings)
    if start_embedded:
        server.start()
    elif not server.ping():
        raise RedisUnavailableError(f"the embedded Valkey is not running ({server.socket}); run `contentq redis start`")
    return redis.Redis(unix_socket_path=str(server.socket), health_check_interval=30)
