"""Running `callkpi` as a user would, with the example config."""

from __future__ import annotations

import subprocess
import sys

from tests.support.databases import EXAMPLE_CONFIG, ROOT


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "--config", str(EXAMPLE_CONFIG), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
