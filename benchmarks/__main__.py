"""``python -m benchmarks``: run every benchmark case (see ``run.py`` and the README)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import main

sys.exit(main())
