"""gRPC messages made readable: protobuf wire-format decoding (L6 encoding).

Without a schema, :func:`decode_raw` reads the wire format the way ``protoc --decode_raw``
does: each field as (number, wire type, value); a length-delimited value is shown as a
nested message when its bytes parse completely as one (with at least one field and
field numbers in range), else as text when it is valid printable UTF-8, else as bytes.
That guess is the same one protoc makes and can be wrong (a byte string that happens to
be a valid message); records say ``"guessed": true`` on such nested messages.

With a schema, :func:`load_schema` compiles a ``.proto`` file at run time with grpcio-tools'
bundled protoc into a ``FileDescriptorSet`` (no hand-written .proto parsing), loads it into
a ``google.protobuf`` descriptor pool, and :meth:`Schema.decode` turns bytes into a dict
with field names (``json_format.MessageToDict``). :meth:`Schema.types_for_path` maps a gRPC
``:path`` (``/package.Service/Method``) to its request and response message types.

:func:`grpc_frames` splits the gRPC length-prefixed message framing (1-byte compressed flag,
4-byte big-endian length) of a DATA stream.

Malformed input raises :class:`ProtobufError` (a :class:`dissect.errors.MalformedError`);
limits are named below. ``load_schema`` is the only function that touches files (the
.proto and protoc's temporary output).
"""

from __future__ import annotations

import struct

from dissect.errors import DissectError, MalformedError

# nesting followed before a length-delimited value is left as bytes: protoc's own default
# recursion limit is 100; real messages rarely nest past 10, and each level costs a re-parse
MAX_DEPTH = 32
# fields decoded per message: beyond this the rest is reported as truncated (a 1 MB run of
# 1-byte varint fields would otherwise make a million Python objects)
MAX_FIELDS = 10_000
# bytes of one message decoded; gRPC's default max receive size is 4 MiB
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# varints are at most 10 bytes (64 bits)
MAX_VARINT_BYTES = 10
# largest field number allowed by the protobuf spec (2^29 - 1)
MAX_FIELD_NUMBER = (1 << 29) - 1
# gRPC messages split from one stream (a streaming RPC may carry many)
MAX_GRPC_MESSAGES = 100_000

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
WIRE_NAMES = {VARINT: "varint", I64: "fixed64", LEN: "len", SGROUP: "group", I32: "fixed32"}


class ProtobufError(MalformedError):
    def __init__(self, reason: str, offset: int | None = None):
        super().__init__(reason, protocol="protobuf", offset=offset)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    for n in range(MAX_VARINT_BYTES):
        if i >= len(buf):
            raise ProtobufError("varint runs past the end", i)
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, i
        shift += 7
    raise ProtobufError("varint longer than 10 bytes", i)


def _printable(b: bytes) -> str | None:
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\t\r\n" for c in s):
        return s
    return None


def _parse(buf: bytes, depth: int, end_group: int | None = None, start: int = 0):
    """(fields, offset after). Raises ProtobufError when ``buf`` is not a message."""
    fields = []
    i = start
    n = len(buf)
    while i < n:
        if len(fields) >= MAX_FIELDS:
            fields.append({"truncated": True, "remaining_bytes": n - i})
            return fields, n
        key, j = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0 or num > MAX_FIELD_NUMBER:
            raise ProtobufError(f"field number {num} out of range", i)
        if wt == VARINT:
            v, i = _varint(buf, j)
            f = {"field": num, "wire_type": "varint", "value": v}
            if v >= 1 << 63:
                f["signed"] = v - (1 << 64)
            if v <= 0xFFFFFFFF:
                f["zigzag"] = (v >> 1) ^ -(v & 1)
        elif wt == I64:
            if j + 8 > n:
                raise ProtobufError("fixed64 runs past the end", j)
            raw = buf[j:j + 8]
            f = {"field": num, "wire_type": "fixed64", "value": struct.unpack("<Q", raw)[0],
                 "double": struct.unpack("<d", raw)[0]}
            i = j + 8
        elif wt == I32:
            if j + 4 > n:
                raise ProtobufError("fixed32 runs past the end", j)
            raw = buf[j:j + 4]
            f = {"field": num, "wire_type": "fixed32", "value": struct.unpack("<I", raw)[0],
                 "float": struct.unpack("<f", raw)[0]}
            i = j + 4
        elif wt == LEN:
            ln, j = _varint(buf, j)
            if j + ln > n:
                raise ProtobufError(f"length {ln} runs past the end", j)
            raw = buf[j:j + ln]
            i = j + ln
            f = {"field": num, "wire_type": "len"}
            f.update(_len_value(raw, depth))
        elif wt == SGROUP:
            if depth >= MAX_DEPTH:
                raise ProtobufError("group nested too deep", i)
            sub, i = _parse(buf, depth + 1, end_group=num, start=j)
            f = {"field": num, "wire_type": "group", "message": sub}
        elif wt == EGROUP:
            if end_group != num:
                raise ProtobufError(f"unexpected end of group {num}", i)
            return fields, j
        else:
            raise ProtobufError(f"wire type {wt} is not valid", i)
        fields.append(f)
    if end_group is not None:
        raise ProtobufError(f"group {end_group} not closed", i)
    return fields, i


def _len_value(raw: bytes, depth: int) -> dict:
    if raw and depth < MAX_DEPTH:
        try:
            sub, _ = _parse(raw, depth + 1)
            if sub:
                return {"message": sub, "guessed": True}
        except ProtobufError:
            pass
    s = _printable(raw)
    if s is not None:
        return {"string": s}
    return {"bytes": raw.hex()}


def decode_raw(data: bytes) -> list[dict]:
    """Fields of one message without a schema (protoc --decode_raw's reading)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtobufError(f"message of {len(data)} bytes exceeds MAX_MESSAGE_BYTES "
                            f"({MAX_MESSAGE_BYTES})", 0)
    fields, _ = _parse(bytes(data), 0)
    return fields


def format_raw(fields: list[dict], indent: int = 0) -> list[str]:
    """Text lines in protoc --decode_raw's layout (``1: 150``, ``2 { ... }``)."""
    pad = "  " * indent
    out = []
    for f in fields:
        if f.get("truncated"):
            out.append(f"{pad}# ... {f['remaining_bytes']} more bytes (MAX_FIELDS)")
            continue
        if "message" in f:
            out.append(f"{pad}{f['field']} {{")
            out += format_raw(f["message"], indent + 1)
            out.append(f"{pad}}}")
        elif "string" in f:
            out.append(f'{pad}{f["field"]}: "{_escape(f["string"])}"')
        elif "bytes" in f:
            out.append(f'{pad}{f["field"]}: "{_hex_escape(bytes.fromhex(f["bytes"]))}"')
        elif f["wire_type"] == "fixed64":
            out.append(f"{pad}{f['field']}: 0x{f['value']:016x}")
        elif f["wire_type"] == "fixed32":
            out.append(f"{pad}{f['field']}: 0x{f['value']:08x}")
        else:
            out.append(f"{pad}{f['field']}: {f['value']}")
    return out


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") \
        .replace("\t", "\\t")


def _hex_escape(b: bytes) -> str:
    return "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else f"\\{c:03o}" for c in b)


# --- gRPC framing ---------------------------------------------------------------------------

def grpc_frames(data: bytes) -> tuple[list[dict], bytes]:
    """Split gRPC length-prefixed messages; returns (messages, leftover bytes)."""
    out = []
    i = 0
    n = len(data)
    while i + 5 <= n and len(out) < MAX_GRPC_MESSAGES:
        flag = data[i]
        ln = struct.unpack_from("!I", data, i + 1)[0]
        if flag not in (0, 1):
            raise ProtobufError(f"gRPC compressed-flag {flag} is not 0 or 1", i)
        if ln > MAX_MESSAGE_BYTES:
            raise ProtobufError(f"gRPC message length {ln} exceeds MAX_MESSAGE_BYTES", i)
        if i + 5 + ln > n:
            break
        out.append({"compressed": bool(flag), "length": ln, "offset": i,
                    "data": bytes(data[i + 5:i + 5 + ln])})
        i += 5 + ln
    return out, bytes(data[i:])


# --- with a schema --------------------------------------------------------------------------

class SchemaError(DissectError):
    exit_code = 2


class Schema:
    """Message types from a compiled FileDescriptorSet."""

    def __init__(self, fds_bytes: bytes):
        from google.protobuf import descriptor_pb2, descriptor_pool
        fds = descriptor_pb2.FileDescriptorSet.FromString(fds_bytes)
        self.pool = descriptor_pool.DescriptorPool()
        for fd in fds.file:
            self.pool.Add(fd)
        self.files = [fd.name for fd in fds.file]
        self.services = {}
        for fd in fds.file:
            for svc in fd.service:
                full = f"{fd.package}.{svc.name}" if fd.package else svc.name
                for m in svc.method:
                    self.services[f"/{full}/{m.name}"] = (m.input_type.lstrip("."),
                                                          m.output_type.lstrip("."))

    def message_class(self, name: str):
        from google.protobuf import message_factory
        try:
            desc = self.pool.FindMessageTypeByName(name)
        except KeyError:
            raise SchemaError(f"message type {name!r} is not in the schema "
                              f"({', '.join(self.files)})") from None
        return message_factory.GetMessageClass(desc)

    def types_for_path(self, path: str) -> tuple[str, str] | None:
        """(request type, response type) for a gRPC ``:path`` or None if unknown."""
        return self.services.get(path)

    def decode(self, data: bytes, type_name: str) -> dict:
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError
        cls = self.message_class(type_name)
        if len(data) > MAX_MESSAGE_BYTES:
            raise ProtobufError("message exceeds MAX_MESSAGE_BYTES", 0)
        try:
            msg = cls.FromString(bytes(data))
        except DecodeError as e:
            raise ProtobufError(f"not a {type_name}: {e}", 0) from None
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def load_schema(proto_path: str, include: list[str] | None = None) -> Schema:
    """Compile ``proto_path`` with grpcio-tools' protoc into a FileDescriptorSet."""
    import os
    import tempfile
    from pathlib import Path
    try:
        from grpc_tools import protoc
    except ImportError:
        raise SchemaError("--proto needs grpcio-tools (pip install grpcio-tools)") from None
    p = Path(proto_path)
    if not p.is_file():
        raise SchemaError(f"{proto_path}: no such .proto file")
    std = Path(protoc.__file__).resolve().parent / "_proto"
    incs = [str(p.resolve().parent)] + [str(i) for i in include or []] + [str(std)]
    with tempfile.TemporaryDirectory(prefix="dissect-proto-") as tmp:
        out = os.path.join(tmp, "set.pb")
        args = ["protoc", *(f"-I{i}" for i in incs), "--include_imports",
                f"--descriptor_set_out={out}", str(p.resolve())]
        rc = protoc.main(args)
        if rc != 0 or not os.path.exists(out):
            raise SchemaError(f"{proto_path}: protoc could not compile it (exit {rc})")
        with open(out, "rb") as f:
            return Schema(f.read())


def decode_grpc_message(data: bytes, schema: Schema | None = None, path: str | None = None,
                        response: bool = False) -> dict:
    """One gRPC message: named fields when the schema knows ``path``, else raw fields."""
    if schema is not None and path is not None:
        types = schema.types_for_path(path)
        if types is not None:
            name = types[1] if response else types[0]
            return {"type_name": name, "fields": schema.decode(data, name)}
    return {"type_name": None, "raw": decode_raw(data)}
