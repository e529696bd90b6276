"""What the tests share: the real stack they run (stack.py), its databases and
settings (databases.py, fixtures.py: registered by tests/conftest.py through
pytest_plugins), the batch reference implementation (reference.py) and the
inputs fed to both (scenarios.py, simulated.py, dips.py, processor_rig.py).

Test modules import from here and never from one another."""
