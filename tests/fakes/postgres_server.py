"""A throwaway PostgreSQL server on a free loopback port, for tests (trust auth, no fsync).

`initdb` refuses to run as root, so under root the binaries run as the `postgres` system user
(via `runuser`) in a directory under /tmp that it owns; otherwise in `workdir`.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.fakes.redis_server import free_port

STARTUP_TIMEOUT_S = 30.0
SERVICE_USER = "postgres"


def find_binary(name: str) -> str:
    """`name` from the newest /usr/lib/postgresql/<ver>/bin, else from PATH."""
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(Path(p).parent.parent.name.split(".")[0] or 0))
    if candidates:
        return candidates[-1]
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (make test installs postgresql)")
    return found


class PostgresServer:
    """A PostgreSQL cluster in `root`; `start()`/`stop()` it (e.g. to test outages)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.user = SERVICE_USER if os.geteuid() == 0 else None
        self.pg_ctl = find_binary("pg_ctl")
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.user or 'postgres'}@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        result = subprocess.run(
            [*prefix, *cmd],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            output = result.stdout.decode(errors="replace")
            raise RuntimeError(f"{cmd[0]} failed ({result.returncode}): {output}\n{log}")

    def init(self) -> None:
        self.sockets.mkdir()
        if self.user:
            shutil.chown(self.root, user=self.user, group=self.user)
            shutil.chown(self.sockets, user=self.user, group=self.user)
        self._run(
            find_binary("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            self.user or "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off"
        self._run(
            self.pg_ctl, "start", "-w", "-t", "30", "-D", str(self.data), "-l", str(self.log),
            "-o", options,
        )  # fmt: skip
        self.running = True
        self.wait_ready()

    def wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop at once (like a crash); `start()` brings the same data back on the same port."""
        self._run(self.pg_ctl, "stop", "-m", "immediate", "-w", "-D", str(self.data))
        self.running = False


@contextmanager
def postgres_server(workdir: Path) -> Iterator[PostgresServer]:
    """Yield a fresh running `PostgresServer` (`.url`: postgresql://...); stop it afterwards."""
    if os.geteuid() == 0:
        # the postgres user can't traverse root's pytest temp dirs: use a /tmp dir it owns
        root = Path(tempfile.mkdtemp(prefix="pgtest-", dir="/tmp"))
    else:
        root = Path(tempfile.mkdtemp(prefix="pg-", dir=workdir))
    server = PostgresServer(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running:
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                server.stop()
        shutil.rmtree(root, ignore_errors=True)
