"""The matcher behind :mod:`fakepeer.protocols.mqtt`'s matchers, and their argument checks.

One :class:`PacketMatcher` class serves them all: a packet type and the fields the packet
must have. It follows the public :class:`~fakepeer.Matcher` protocol only (``match``,
``describe``, ``explain``, ``_closeness``), as a matcher of a user's own kit would. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from fakepeer import ANY, NEED_MORE, FramingError, Matched, Matcher, MatchOutcome, ScriptError

from ._mqtt_packets import (
    Packet,
    PacketType,
    Publish,
    Subscribe,
    Unsubscribe,
    frame_length,
    readings,
)

__all__ = ["PacketMatcher", "check_choice", "check_type", "topic_matches"]


#: The MQTT version of each protocol level.
_NAMES = {3: "3.1", 4: "3.1.1", 5: "5"}


def _summary(packet: Packet) -> str:
    """A packet in a few words: ``a PUBLISH of b'on' to 'cmd'``."""
    if isinstance(packet, Publish):
        return f"a PUBLISH of {packet.payload!r} to {packet.topic!r}"
    if isinstance(packet, Subscribe | Unsubscribe):
        return f"a {packet.type.name} of {', '.join(map(repr, packet.topic_filters))}"
    return f"a {packet.type.name}"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` (a topic name) matches ``topic_filter`` as a broker matches it
    (MQTT 5.0 §4.7): ``+`` is one level, a final ``#`` this level and all below
    (``"a/#"`` matches ``"a"`` and ``"a/b/c"``); a filter that starts with a wildcard does
    not match a topic that starts with ``$`` (``$SYS/...``)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    levels = topic.split("/")
    for index, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return True
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(topic_filter.split("/")) == len(levels)


def check_choice(function: str, keyword: str, value: object, choices: tuple[object, ...]) -> None:
    """:class:`ScriptError` unless ``value`` is one of ``choices`` (never a bool for a number)."""
    if isinstance(value, bool) or not any(value is c or value == c for c in choices):
        shown = ", ".join("ANY" if c is ANY else repr(c) for c in choices)
        raise ScriptError(f"mqtt.{function}({keyword}=...) takes one of {shown}, got {value!r}")


def check_type(kind: object) -> PacketType | None:
    """A packet type from a :class:`PacketType`, its name or its number; ``None`` for ANY."""
    if kind is ANY:
        return None
    if isinstance(kind, PacketType):
        return kind
    if isinstance(kind, str) and kind.upper() in PacketType.__members__:
        return PacketType[kind.upper()]
    if isinstance(kind, int) and not isinstance(kind, bool) and 1 <= kind <= 15:
        return PacketType(kind)
    names = ", ".join(PacketType.__members__)
    raise ScriptError(f"mqtt.packet() takes a packet type ({names}) or ANY, got {kind!r}")


def _show(value: object) -> str:
    return "ANY" if value is ANY else repr(value)


class PacketMatcher(Matcher):
    """MQTT packets of one ``kind`` (``None``: any) whose ``fields`` have the values given
    (:data:`~fakepeer.ANY` for any), read as ``version`` (``None``: as the packet shows)."""

    def __init__(
        self,
        kind: PacketType | None,
        fields: Mapping[str, object],
        *,
        version: int | None = None,
    ) -> None:
        self.kind = kind
        self.fields = {name: value for name, value in fields.items() if value is not ANY}
        self.version = version

    # -- matching -------------------------------------------------------------------------

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream:  # Raw framing: the packet at the front of the buffer, once it is all there
            try:
                length = frame_length(data)
            except FramingError:
                return None
            if length is None or len(data) < length:
                return NEED_MORE
            data = data[:length]
        try:
            found = readings(data, self.version)
        except FramingError:
            return None
        fitting = [r for r in found if self._wrong_type(r) is None and self._mismatch(r) is None]
        if not fitting or self._ambiguous(found, fitting):
            return None
        return Matched(fitting[0], len(data))

    @staticmethod
    def _ambiguous(found: list[Packet], fitting: list[Packet]) -> bool:
        """Whether a PUBLISH read two ways (no ``version``) fits one reading, not the other:
        then it matches neither (which payload the client sent is unknown)."""
        return isinstance(found[0], Publish) and 0 < len(fitting) < len(found)

    def _wrong_type(self, packet: Packet) -> str | None:
        if self.kind is None or packet.type is self.kind:
            return None
        return f"is an MQTT {packet.type.name}, not a {self.kind.name}"

    def _mismatch(self, packet: Packet) -> str | None:
        """What in ``packet`` differs from the fields, in words, or ``None``."""
        fields = dict(self.fields)
        if "topic_filter" in fields or (isinstance(packet, Subscribe) and "qos" in fields):
            why = self._filter_mismatch(packet, fields.pop("topic_filter", ANY), fields)
            if why is not None:
                return why
        for name, wanted in fields.items():
            got = getattr(packet, name, None)
            if name == "topic":
                ok = isinstance(got, str) and topic_matches(str(wanted), got)
            elif name == "payload" and isinstance(wanted, Matcher):
                ok = isinstance(got, bytes) and isinstance(wanted.match(got, stream=False), Matched)
            else:
                ok = got == wanted
            if not ok:
                shown = wanted.describe() if isinstance(wanted, Matcher) else repr(wanted)
                return f"has {name} {got!r}, not {shown}"
        return None

    @staticmethod
    def _filter_mismatch(packet: Packet, wanted: object, fields: dict[str, object]) -> str | None:
        if isinstance(packet, Unsubscribe):
            if wanted in packet.topic_filters:
                return None
            return f"has topic filters {list(packet.topic_filters)}, none {wanted!r}"
        assert isinstance(packet, Subscribe)
        qos = fields.pop("qos", ANY)
        for subscription in packet.subscriptions:
            if (wanted is ANY or subscription.topic_filter == wanted) and (
                qos is ANY or subscription.qos == qos
            ):
                return None
        asked = [(s.topic_filter, s.qos) for s in packet.subscriptions]
        return (
            f"subscribes to {asked} (topic filter, QoS), none {_show(wanted)} at QoS {_show(qos)}"
        )

    # -- diagnoses ------------------------------------------------------------------------

    def describe(self) -> str:
        words = [f"MQTT {self.kind.name}" if self.kind else "MQTT packet"]
        for name, value in self.fields.items():
            shown = value.describe() if isinstance(value, Matcher) else repr(value)
            words.append(f"{name.replace('_', ' ')} {shown}")
        if self.version is not None:
            words.append(f"(read as version {self.version})")
        return " ".join(words)

    def _readings(self, data: bytes) -> list[Packet] | str:
        try:
            length = frame_length(data)
            if length is not None and length < len(data):
                data = data[:length]  # Raw framing: the packet at the front
            return readings(data, self.version)
        except FramingError as error:
            return self._other_version(data) or f"is not a well-formed MQTT packet: {error}"

    def _other_version(self, data: bytes) -> str | None:
        """Why a packet that does not read as ``self.version`` reads as another version."""
        if self.version is None:
            return None
        try:
            others = [p for p in readings(data) if p.version not in (None, self.version)]
        except FramingError:
            return None
        if not others:
            return None
        other = others[0]
        return (
            f"does not read as MQTT {_NAMES.get(self.version, self.version)}; as "
            f"{_NAMES.get(other.version or 0, other.version)} it is {_summary(other)} (does the "
            f"client speak {_NAMES.get(other.version or 0, other.version)}? then "
            f"version={other.version})"
        )

    def explain(self, data: bytes) -> str:
        found = self._readings(data)
        if isinstance(found, str):
            return found
        first = found[0]
        fitting = [r for r in found if self._wrong_type(r) is None and self._mismatch(r) is None]
        if self._ambiguous(found, fitting):
            return self._explain_ambiguous(found)
        why = self._wrong_type(first) or self._mismatch(first)
        if why is None:
            return f"matches {self.describe()}"
        if self.kind is not None and first.type is self.kind:
            why = f"is an MQTT {first.type.name} that {why}"
        if len(found) > 1 and self.version is None and self._wrong_type(first) is None:
            others = ", ".join(f"version={p.version}" for p in found)
            why += f" (it reads as {others}: pass one to the matcher to choose)"
        return why

    def _explain_ambiguous(self, found: list[Packet]) -> str:
        """Why a PUBLISH that one reading fits, and the other does not, matches neither."""
        shown = "; ".join(
            f"as version={p.version} its payload is {p.payload!r}"  # type: ignore[attr-defined]
            + (" (matches)" if self._mismatch(p) is None else " (does not match)")
            for p in found
        )
        return (
            "is an MQTT PUBLISH that is ambiguous: a packet alone does not say which MQTT "
            f"version wrote it, and its readings disagree ({shown}); pass the version the "
            "client speaks (its CONNECT's protocol level) to the matcher: "
            "mqtt.publish(..., version=4) or mqtt.publish(..., version=5)"
        )

    def _closeness(self, data: bytes, stream: bool) -> float:
        found = self._readings(data)
        if isinstance(found, str):
            return 0.0
        best = 0.0
        for reading in found:
            if self._wrong_type(reading) is not None:
                continue
            total = len(self.fields) or 1
            wrong = sum(
                1
                for name, value in self.fields.items()
                if PacketMatcher(self.kind, {name: value})._mismatch(reading) is not None
            )
            best = max(best, 0.5 + 0.45 * (total - wrong) / total)
        return best or 0.2
