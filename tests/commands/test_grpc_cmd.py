"""dissect grpc: messages of the lab's real gRPC capture decoded raw and with the .proto,
equal to what the client sent (ground truth)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import PCAPS, REPO, run_dissect  # noqa: E402

CAP = PCAPS / "grpc-h2c.pcap"


@pytest.fixture
def truth():
    if not CAP.exists():
        pytest.skip("grpc-h2c.pcap not committed")
    return json.loads((PCAPS / "grpc-h2c.json").read_text())["client"]["records"]


def test_raw_decoding_shows_the_request_text(truth):
    rc, out, err = run_dissect("grpc", CAP)
    assert rc == 0, err
    assert f'1: "{truth[0]["request"]}"' in out          # field 1, a string, as decode_raw shows it
    assert f"2: {truth[0]['reply_length']}" in out


def test_schema_names_fields_on_both_sides(truth):
    pytest.importorskip("grpc_tools")
    rc, out, err = run_dissect("grpc", CAP, "--proto", REPO / "dissect/lab/proto/lab.proto",
                               "--format", "jsonl")
    assert rc == 0, err
    calls = [json.loads(l) for l in out.splitlines()]
    assert [c["path"] for c in calls] == [t["path"] for t in truth]
    first = calls[0]["decoded"]
    assert first[0]["direction"] == "request" and first[0]["type_name"].endswith("Request")
    assert first[0]["fields"]["text"] == truth[0]["request"]
    assert first[1]["fields"] == {"text": truth[0]["request"], "length": truth[0]["reply_length"]}
    count = calls[2]["decoded"]
    assert count[0]["fields"] == {"upto": len(truth[2]["streamed"])}
    assert [d["fields"] for d in count[1:]] == [{"n": n} for n in truth[2]["streamed"]]


def test_missing_proto_is_a_clear_error(tmp_path, truth):
    rc, _, err = run_dissect("grpc", CAP, "--proto", tmp_path / "nope.proto")
    assert rc != 0 and "nope.proto" in err and "Traceback" not in err
