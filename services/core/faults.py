"""Which dependency an error is about, for logs, health answers and 503 bodies.

An operator reading "Connect call failed ('127.0.0.1', 5432)" under "alert kafka
sink" looks at the broker; the port is Postgres'. Every place that reports a
failure names the dependency with `dependency_of`, so the log line, /readyz and
the 503 body all say the same thing.
"""

from __future__ import annotations

from typing import Literal

import asyncpg

Dependency = Literal["postgres", "broker", "unknown"]

_POSTGRES_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def dependency_of(exc: BaseException, default: Dependency = "unknown") -> Dependency:
    """The dependency an exception (or the exception it wraps) is about: by its
    type, or for a plain OSError ("Connect call failed") by the library whose code
    raised it, the deepest frame of its traceback."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        module = type(current).__module__
        if module.startswith(("aiokafka", "kafka")):
            return "broker"
        if module.startswith(("asyncpg", "sqlalchemy")) or isinstance(current, _POSTGRES_ERRORS):
            return "postgres"
        found = _raised_in(current)
        if found is not None:
            return found
        # SQLAlchemy keeps the driver's error in .orig; asyncio wraps in __cause__
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return default


def _raised_in(exc: BaseException) -> Dependency | None:
    found: Dependency | None = None
    tb = exc.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if "/aiokafka/" in path:
            found = "broker"
        elif "/asyncpg/" in path or "/sqlalchemy/" in path:
            found = "postgres"
        tb = tb.tb_next
    return found


def is_unreachable(exc: BaseException) -> bool:
    """True for errors that mean "cannot talk to it now" (refused, reset, timed
    out, shutting down) rather than "it answered no"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, TimeoutError, *_POSTGRES_ERRORS)):
            return True
        name = type(current).__name__
        if name in ("KafkaConnectionError", "NodeNotReadyError", "KafkaTimeoutError",
                    "RequestTimedOutError", "InterfaceError", "OperationalError"):  # fmt: skip
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def reason(exc: BaseException, limit: int = 300, default: Dependency = "unknown") -> str:
    """One line naming the dependency and what it said: "postgres: ConnectionRefusedError:
    [Errno 111] Connect call failed ('127.0.0.1', 5432)". `default`: the dependency
    to name when the error does not tell (the caller knows what it was talking to)."""
    inner: BaseException = getattr(exc, "orig", None) or exc
    name = type(inner).__name__
    text = str(inner).splitlines()[0] if str(inner) else ""
    text = text.removeprefix(f"{name}: ")  # aiokafka's errors start with their name
    what = f"{name}: {text}" if text else name
    return f"{dependency_of(exc, default)}: {what}"[:limit]
