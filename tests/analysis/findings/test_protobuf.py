"""Protobuf wire-format decoding: protoc --decode_raw (grpcio-tools' bundled protoc) as the
reference without a schema, dissect/lab/proto/lab.proto with one, and the gRPC messages of
the lab capture (bytes extracted by tshark) against the lab's ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conftest import PCAPS, needs_tshark, tshark_fields  # noqa: E402

from dissect.analysis.findings import protobuf as pb  # noqa: E402
from dissect.errors import DissectError, MalformedError  # noqa: E402

LAB_PROTO = Path(__file__).resolve().parents[3] / "dissect" / "lab" / "proto" / "lab.proto"
grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools not installed")


def protoc_decode_raw(data: bytes) -> list[str] | None:
    p = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--decode_raw"],
                       input=data, capture_output=True, timeout=60)
    if p.returncode != 0:
        return None
    return p.stdout.decode().rstrip("\n").split("\n") if p.stdout.strip() else []


def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _key(f, wt):
    return _varint(f << 3 | wt)


def _len(f, b):
    return _key(f, 2) + _varint(len(b)) + b


SAMPLES = [
    bytes.fromhex("089601"),                                   # 1: 150
    _len(1, b"hello from the dissect lab") + _key(2, 0) + _varint(26),
    _len(3, _len(1, b"nested") + _key(2, 0) + _varint(2 ** 40)),
    _key(4, 1) + (1234567).to_bytes(8, "little") + _key(5, 5) + (77).to_bytes(4, "little"),
    _len(6, bytes([0, 1, 2, 255, 254])),                      # binary bytes
    _key(7, 0) + _varint(2 ** 64 - 1),                         # -1 as int64
    _len(8, b"") + _len(9, b"tab\tand \"quotes\""),
    _key(10, 3) + _key(1, 0) + _varint(5) + _key(10, 4),      # a group
]


@pytest.mark.parametrize("data", SAMPLES, ids=[f"s{i}" for i in range(len(SAMPLES))])
def test_decode_raw_matches_protoc(data):
    ref = protoc_decode_raw(data)
    assert ref is not None
    mine = pb.format_raw(pb.decode_raw(data))
    assert mine == ref


def test_decode_raw_rejects_what_protoc_rejects():
    for bad in (b"\x0a\x05abc", b"\x08", b"\x00\x01", b"\x0f\x01", b"\x0b\x08\x01",
                b"\x08" + b"\xff" * 11):
        assert protoc_decode_raw(bad) is None
        with pytest.raises(pb.ProtobufError) as ei:
            pb.decode_raw(bad)
        assert isinstance(ei.value, MalformedError) and isinstance(ei.value, DissectError)


def test_limits_depth_fields_size():
    deep = b"\x08\x01"
    for _ in range(pb.MAX_DEPTH + 5):
        deep = _len(1, deep)
    fields = pb.decode_raw(deep)
    depth, cur = 0, fields
    while cur and "message" in cur[0]:
        cur, depth = cur[0]["message"], depth + 1
    assert depth == pb.MAX_DEPTH          # deeper levels are left as bytes, not recursed
    assert "bytes" in cur[0] or "string" in cur[0]
    many = b"\x08\x01" * (pb.MAX_FIELDS + 10)
    out = pb.decode_raw(many)
    assert len(out) == pb.MAX_FIELDS + 1 and out[-1] == {"truncated": True, "remaining_bytes": 20}
    with pytest.raises(pb.ProtobufError):
        pb.decode_raw(b"\x00" * (pb.MAX_MESSAGE_BYTES + 1))


def test_schema_from_lab_proto():
    s = pb.load_schema(str(LAB_PROTO))
    assert s.types_for_path("/dissect.lab.Echo/Say") == ("dissect.lab.SayRequest",
                                                         "dissect.lab.SayReply")
    assert s.types_for_path("/dissect.lab.Echo/Nope") is None
    assert s.decode(_len(1, b"hi") + _key(2, 0) + _varint(2), "dissect.lab.SayReply") == \
        {"text": "hi", "length": 2}
    with pytest.raises(pb.SchemaError):
        s.message_class("dissect.lab.Missing")
    with pytest.raises(pb.ProtobufError):
        s.decode(b"\x0a\x05ab", "dissect.lab.SayRequest")


def test_schema_errors_are_ours(tmp_path):
    with pytest.raises(pb.SchemaError):
        pb.load_schema(str(tmp_path / "absent.proto"))
    bad = tmp_path / "bad.proto"
    bad.write_text("syntax = \"proto3\"; message { broken")
    with pytest.raises(pb.SchemaError):
        pb.load_schema(str(bad))


def test_grpc_framing():
    m1, m2 = _len(1, b"a"), _key(1, 0) + _varint(3)
    data = b"\x00" + len(m1).to_bytes(4, "big") + m1 + b"\x00" + len(m2).to_bytes(4, "big") + m2
    msgs, rest = pb.grpc_frames(data + b"\x00\x00")
    assert [m["data"] for m in msgs] == [m1, m2] and rest == b"\x00\x00"
    with pytest.raises(pb.ProtobufError):
        pb.grpc_frames(b"\x07\x00\x00\x00\x00")


@needs_tshark
def test_grpc_lab_capture_messages_decoded_with_and_without_schema():
    path = PCAPS / "grpc-h2c.pcap"
    truth = json.loads((PCAPS / "grpc-h2c.json").read_text())["client"]["records"]
    rows = tshark_fields(path, ["frame.number", "http2.streamid", "grpc.message_data",
                                "tcp.srcport"],
                         extra=("-d", "tcp.port==50051,http2", "-Y", "grpc.message_data"))
    schema = pb.load_schema(str(LAB_PROTO))
    server_port = "50051"
    by_stream: dict = {}
    for frame, sids, data, sport in rows:
        for hexdata in data.split(","):
            by_stream.setdefault(sids.split(",")[0], []).append((sport == server_port,
                                                                 bytes.fromhex(hexdata)))
    paths = {"1": "/dissect.lab.Echo/Say", "3": "/dissect.lab.Echo/Say",
             "5": "/dissect.lab.Echo/Count", "7": "/dissect.lab.Echo/Say"}
    decoded = {sid: [pb.decode_grpc_message(d, schema, paths[sid], response=resp)
                     for resp, d in msgs] for sid, msgs in by_stream.items()}
    say1 = decoded["1"]
    assert say1[0]["fields"] == {"text": truth[0]["request"]}
    assert say1[1]["fields"] == {"text": truth[0]["request"], "length": truth[0]["reply_length"]}
    assert decoded["3"][1]["fields"]["length"] == truth[1]["reply_length"]
    count = decoded["5"]
    assert count[0]["type_name"] == "dissect.lab.CountRequest"
    assert [m["fields"].get("n") for m in count[1:]] == truth[2]["streamed"]
    # schema-less: the same bytes read as protoc --decode_raw reads them
    raw = pb.decode_grpc_message(by_stream["1"][0][1])
    assert raw["type_name"] is None
    assert pb.format_raw(raw["raw"]) == protoc_decode_raw(by_stream["1"][0][1])
