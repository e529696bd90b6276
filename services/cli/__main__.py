"""`python -m services.cli`: what the services' child processes run."""

import sys

from services.cli.main import main

sys.exit(main())
