"""Errors name the dependency they are about, whichever library raised them."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
from aiokafka.errors import KafkaConnectionError

from services.core.faults import dependency_of, is_unreachable, reason


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_from_asyncpg_names_postgres_though_it_is_a_plain_oserror() -> None:
    async def connect() -> BaseException:
        try:
            await asyncpg.connect(host="127.0.0.1", port=closed_port(), user="x")
        except BaseException as exc:
            return exc
        raise AssertionError("connected to a closed port")

    exc = asyncio.run(connect())
    assert isinstance(exc, OSError) and type(exc).__module__ == "builtins"
    assert dependency_of(exc) == "postgres"
    assert is_unreachable(exc)
    assert reason(exc).startswith("postgres: ConnectionRefusedError: ")


def test_kafka_errors_name_the_broker_without_repeating_their_class_name() -> None:
    exc = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]")
    assert dependency_of(exc) == "broker"
    assert is_unreachable(exc)
    assert (
        reason(exc) == "broker: KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 9)]"
    )


def test_an_error_of_our_own_code_is_not_blamed_on_a_dependency() -> None:
    exc = ValueError("bad value")
    assert dependency_of(exc) == "unknown"
    assert dependency_of(exc, default="postgres") == "postgres"
    assert not is_unreachable(exc)
