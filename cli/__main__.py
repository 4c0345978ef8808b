"""`python -m cli`: the same as the `claimtriage` command."""

import sys

from cli.main import main

sys.exit(main())
