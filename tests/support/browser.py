"""Debian's Chromium driven by Playwright, for the pages' browser tests: headless,
kept off the network. Skips, saying why, only where Chromium is not installed
(`make test` installs Debian's package where it can: as root with apt)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.auth import token_hash
from tests.support.databases import EXAMPLE_CONFIG

# Chromium as root needs --no-sandbox; the rest keep it off the network (no
# update checks, sync, field trials or DNS lookups beyond localhost), which this
# machine's closed network would otherwise refuse over and over.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def chromium_path() -> str:
    path = os.environ.get("CALLKPI_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip(
            "Chromium is not installed: `apt-get install chromium` (make test does this "
            "where it runs as root with apt), or set CALLKPI_CHROMIUM to its path"
        )
    return path


def launched() -> Iterator[Any]:
    """A browser for one test module (the body of its `browser` fixture)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


# the same, outside a fixture (a test that starts its own demo)
closing_browser = contextmanager(launched)


def log_in(page: Any, url: str, token: str) -> None:
    """Open `url` and give the token the page asks for."""
    page.goto(url)
    page.locator("#login").wait_for(state="visible", timeout=10_000)
    page.fill("#login-token", token)
    page.click("#login button[type=submit]")


def example_with_tokens(directory: Path, admin: str, read: str, **overrides: Any) -> Path:
    """The example config with tokens on (an admin and a read token) and
    `overrides` of its top-level keys, written to `directory`: what a page
    under test logs in to."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config.pop("scorecard_file")  # relative to the example's directory; not needed here
    config["auth"] = {
        "tokens": [
            {"name": "ops", "sha256": token_hash(admin), "scopes": ["admin"]},
            {"name": "screen", "sha256": token_hash(read), "scopes": ["read"]},
        ]
    }
    config |= overrides
    path = directory / "callkpi.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path
