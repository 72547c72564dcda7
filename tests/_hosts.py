"""What the transport tests share: the two hosts a peer (or proxy) serves on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal, TypeVar

from fakepeer import FakePeer, Proxy

#: Where a peer serves: the fakepeer hub (``with peer.serve()``) or the test's running loop
#: (``async with peer.serve()``).
Host = Literal["hub", "loop"]

_H = TypeVar("_H", FakePeer, Proxy)


@contextlib.asynccontextmanager
async def hosted(peer: _H, host: Host) -> AsyncIterator[_H]:
    """Serve ``peer`` on the hub (``with``) or in the running loop (``async with``)."""
    if host == "hub":
        with peer.serve() as serving:
            yield serving
    else:
        async with peer.serve() as serving:
            yield serving
