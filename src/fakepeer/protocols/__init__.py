"""Protocol kits: a framing, matchers, reply builders and presets for one protocol each.

=================================  ===========================================================
:mod:`fakepeer.protocols.resp`     Redis's RESP2 and RESP3 (redis-py, any Redis client)
:mod:`fakepeer.protocols.mqtt`     MQTT 3.1.1 and 5 (paho-mqtt, aiomqtt)
:mod:`fakepeer.protocols.modbus`   Modbus/TCP, the MBAP header (pymodbus, devices)
:mod:`fakepeer.protocols.http1`    HTTP/1.1 requests and responses (http.client, urllib)
=================================  ===========================================================

A kit is made of the public library only (``fakepeer``'s framings, :class:`~fakepeer.Matcher`
and reply callables): an import contract keeps it so, and a kit is a model to copy when
writing one for your own protocol.
"""

from __future__ import annotations
