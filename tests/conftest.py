"""The suite's fixtures live in tests/support/fixtures.py (registered here);
hypothesis runs without deadlines (the shared machines' speed varies 2×)."""

from hypothesis import settings as hsettings

pytest_plugins = ["tests.support.fixtures"]

hsettings.register_profile("default", deadline=None, print_blob=True)
hsettings.load_profile("default")
