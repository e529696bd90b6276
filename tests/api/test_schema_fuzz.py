"""schemathesis against a running API with ingest: generated requests for every
documented operation never get a 5xx, and every response is as documented."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def fuzzed_stack(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    """Its own database: the fuzzer closes periods and replays the quarantine."""
    s = Stack(stack_env(broker, new_database(pg), f"fuzz{os.getpid()}")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_stack: Stack) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{fuzzed_stack.url}/openapi.json")
    # the wallboard feed never ends (SSE): its own tests read it (test_stream.py)
    return schema.exclude(path="/v1/stream")


# Examples per operation: a few minutes in all on 2 cores (about 20 operations).
EXAMPLES = 25


def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    api_schema: schemathesis.BaseSchema,
) -> None:
    # (schemathesis' pytest plugin does not run on pytest 9: its Python API does)
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the OpenAPI document: {result.err()}")
            continue
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))  # fmt: skip
        def call(case: schemathesis.Case[Any]) -> None:
            # Left out: "a schema-valid request must be accepted". Our parameters
            # mean more than their JSON Schema says (an RFC 3339 instant, a period
            # id, no control characters), and refusing them with a 422 that names
            # the problem is the documented answer.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried, all shown
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
