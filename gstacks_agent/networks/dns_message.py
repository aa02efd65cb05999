"""The few parts of the DNS wire format (RFC 1035 section 4) our resolver needs.

How it works. A message is a 12-byte header (id, flags, four section counts) and
sections of records. A query we answer has one question: a name as length-prefixed
labels, a type and a class. Our answers copy the question, set QR and AA, and add
A records (type 1, class IN) with a short TTL, so a change of address reaches
clients quickly. Queries for names we do not own are not parsed beyond the question:
the resolver forwards the original bytes and relays the upstream answer unchanged.

Sans-io: bytes in, bytes out; the sockets live in `resolver`.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from gstacks_agent.networks.errors import MalformedDnsMessage

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
ANSWER_TTL_S = 5

_HEADER = struct.Struct("!HHHHHH")
_FLAG_QR = 0x8000
_FLAG_AA = 0x0400
_FLAG_RD = 0x0100
_FLAG_RA = 0x0080
_OPCODE_MASK = 0x7800


@dataclass(frozen=True)
class Question:
    """The one question of a query."""

    message_id: int
    name: str
    qtype: int
    qclass: int
    flags: int
    # Where the question section ends in the original message.
    end: int


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        if offset >= len(data):
            raise MalformedDnsMessage("name runs past the end of the message")
        length = data[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            # Queries do not compress their one name (RFC 1035 section 4.1.4).
            raise MalformedDnsMessage("compressed name in a question")
        label = data[offset : offset + length]
        if len(label) != length:
            raise MalformedDnsMessage("label runs past the end of the message")
        labels.append(label.decode("ascii", errors="replace").lower())
        offset += length
    return ".".join(labels), offset


def parse_question(data: bytes) -> Question:
    """The question of a standard query; MalformedDnsMessage otherwise."""
    if len(data) < _HEADER.size:
        raise MalformedDnsMessage("shorter than a DNS header")
    message_id, flags, qdcount, _, _, _ = _HEADER.unpack_from(data)
    if flags & _FLAG_QR:
        raise MalformedDnsMessage("a response, not a query")
    if qdcount != 1:
        raise MalformedDnsMessage(f"{qdcount} questions; we answer exactly one")
    name, offset = _read_name(data, _HEADER.size)
    if offset + 4 > len(data):
        raise MalformedDnsMessage("question without type and class")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Question(message_id, name, qtype, qclass, flags, offset + 4)


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"label {label!r} must be 1..63 bytes")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(message_id: int, name: str, qtype: int = TYPE_A) -> bytes:
    """A recursive query for `name` (used by diagnostics and tests)."""
    header = _HEADER.pack(message_id, _FLAG_RD, 1, 0, 0, 0)
    return header + _encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def build_answer(
    query: bytes, question: Question, addresses: Sequence[str], rcode: int
) -> bytes:
    """Our authoritative answer to `query`: A records for `addresses`, or `rcode`."""
    flags = (
        _FLAG_QR | _FLAG_AA | _FLAG_RA | (question.flags & (_FLAG_RD | _OPCODE_MASK))
    )
    flags |= rcode
    header = _HEADER.pack(question.message_id, flags, 1, len(addresses), 0, 0)
    answers = b""
    for address in addresses:
        # 0xC00C points at the question's name, right after the header.
        answers += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ANSWER_TTL_S, 4)
        answers += ipaddress.IPv4Address(address).packed
    return header + query[_HEADER.size : question.end] + answers


def build_error(query: bytes, rcode: int) -> bytes | None:
    """A bare error answer echoing the query's id, if it has one."""
    if len(query) < 2:
        return None
    (message_id,) = struct.unpack_from("!H", query)
    return _HEADER.pack(message_id, _FLAG_QR | _FLAG_RA | rcode, 0, 0, 0, 0)


def parse_a_answers(data: bytes) -> tuple[int, list[str]]:
    """The rcode and A-record addresses of an answer (for diagnostics)."""
    if len(data) < _HEADER.size:
        raise MalformedDnsMessage("shorter than a DNS header")
    _, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data)
    offset = _HEADER.size
    for _ in range(qdcount):
        offset = _skip_name(data, offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        if offset + 10 > len(data):
            raise MalformedDnsMessage("record runs past the end of the message")
        rtype, _, _, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        rdata = data[offset : offset + length]
        offset += length
        if rtype == TYPE_A and len(rdata) == 4:
            addresses.append(str(ipaddress.IPv4Address(rdata)))
    return flags & 0xF, addresses


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        if offset >= len(data):
            raise MalformedDnsMessage("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset
