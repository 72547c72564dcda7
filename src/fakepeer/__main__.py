"""``python -m fakepeer``: the same as the ``fakepeer`` command."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
