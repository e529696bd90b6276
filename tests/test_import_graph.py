"""The tests' own structure: helpers are shared through tests/support/, so no
test module imports another (the services' layers are import-linter's contract in
`make lint`, pyproject.toml)."""

from __future__ import annotations

from collections.abc import Callable

import grimp


def is_test_module(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("test_")


def imports_from(package: str, wrong: Callable[[str], bool]) -> list[str]:
    """`module imports other` for each module under `package` importing a wrong one."""
    graph = grimp.build_graph("tests", "services", cache_dir=None)
    return sorted(
        f"{m} imports {i}"
        for m in graph.modules
        if m.startswith(package + ".")
        for i in graph.find_modules_directly_imported_by(m)
        if wrong(i) and i != m
    )


def test_no_test_module_imports_another_test_module() -> None:
    assert imports_from("tests", is_test_module) == []


def test_the_helpers_in_tests_support_import_no_test_module() -> None:
    outside = lambda m: m.startswith("tests.") and not m.startswith("tests.support")  # noqa: E731
    assert imports_from("tests.support", outside) == []
