"""Which dependency an error is about, for logs, health answers and 503 bodies.

An operator reading "Connect call failed ('127.0.0.1', 5432)" under "alert kafka
sink" looks at the broker; the port is Postgres'. Every place that reports a
failure names the dependency with `dependency_of`, so the log line, /readyz and
the 503 body all say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it wraps: SQLAlchemy keeps the driver's error in
    .orig, asyncio and raise-from in __cause__ / __context__."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__


def dependency_of(exc: BaseException, default: Dependency = "unknown") -> Dependency:
    """The dependency an exception (or the exception it wraps) is about: by its
    type, or for a plain OSError ("Connect call failed") by the library whose code
    raised it, the deepest frame of its traceback."""
    for current in _chain(exc):
        module = type(current).__module__
        if module.startswith(("aiokafka", "kafka")):
            return "broker"
        if module.startswith(("asyncpg", "sqlalchemy")) or isinstance(current, _POSTGRES_ERRORS):
            return "postgres"
        found = _raised_in(current)
        if found is not None:
            return found
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


# by name: aiokafka's and SQLAlchemy's, whose modules this one does not import
_UNREACHABLE_NAMES = frozenset(
    {"KafkaConnectionError", "NodeNotReadyError", "KafkaTimeoutError", "RequestTimedOutError",
     "InterfaceError", "OperationalError"}
)  # fmt: skip


def is_unreachable(exc: BaseException) -> bool:
    """True for errors that mean "cannot talk to it now" (refused, reset, timed
    out, shutting down) rather than "it answered no"."""
    return any(
        isinstance(c, (OSError, TimeoutError, *_POSTGRES_ERRORS))
        or type(c).__name__ in _UNREACHABLE_NAMES
        for c in _chain(exc)
    )


def reason(
    exc: BaseException,
    limit: int = 300,
    default: Dependency = "unknown",
    waited_s: float | None = None,
) -> str:
    """One line naming the dependency and what it said: "postgres: ConnectionRefusedError:
    [Errno 111] Connect call failed ('127.0.0.1', 5432)". `default`: the dependency
    to name when the error does not tell (the caller knows what it was talking to);
    a TimeoutError of the caller's own `waited_s` reads "no answer within N s"."""
    if waited_s is not None and type(exc) is TimeoutError:
        return f"{dependency_of(exc, default)}: no answer within {waited_s:.0f} s"
    inner: BaseException = getattr(exc, "orig", None) or exc
    name = type(inner).__name__
    text = str(inner).splitlines()[0] if str(inner) else ""
    text = text.removeprefix(f"{name}: ")  # aiokafka's errors start with their name
    what = f"{name}: {text}" if text else name
    return f"{dependency_of(exc, default)}: {what}"[:limit]
