"""What the whole suite needs loaded first."""

from __future__ import annotations

# cryptography (under trustme, which makes TLS peers' certificates) binds its classes to its
# compiled core once per process: imported first inside one of pytester's in-process runs
# (the docs' examples), it would be dropped after it and imported again, broken
# ("curve must be an EllipticCurve instance"). Imported here, it is never dropped.
import trustme  # noqa: F401
