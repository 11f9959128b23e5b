"""`python -m worker.ops`: the same as the `spotdrain` command."""

from __future__ import annotations

import sys

from worker.ops.cli import main

sys.exit(main())
