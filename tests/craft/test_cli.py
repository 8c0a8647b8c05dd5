"""The craft commands offline (no root): output, -w, --force, usage errors."""

from __future__ import annotations

import pytest

from dissect.errors import ExitCode
from dissect.io.capture import read_frames


def test_offline_handshake_shows_layers_and_ladder_and_writes(cli, tmp_path):
    out = tmp_path / "o.pcap"
    rc, so, _se = cli("craft", "handshake", "--offline", "--ftp", "USER anonymous", "--seed",
                      "3", "-w", out)
    assert rc == 0
    assert "Crafted offline (nothing sent)" in so
    assert "L4 transport" in so and "tcp.seq_raw" in so and "L7 application" in so
    assert "Exchange (absolute sequence numbers)" in so and '"USER anonymous"' in so
    assert f"Wrote {out} (" in so
    frames = list(read_frames(str(out)))
    assert len(frames) == so.count("\nFrame ") + so.startswith("Frame ")
    rc2, _so2, _ = cli("craft", "handshake", "--offline", "--ftp", "USER anonymous", "--seed",
                      "3", "-w", out, "--force")
    assert rc2 == 0 and [f.data for f in read_frames(str(out))] == [f.data for f in frames]


def test_offline_output_refuses_overwrite(tmp_path, capsys):
    from dissect.cli import main
    out = tmp_path / "exists.pcap"
    out.write_bytes(b"keep")
    with pytest.raises(SystemExit) as e:
        main(["craft", "udp", "--offline", "--payload", "x", "-w", str(out)])
    assert e.value.code == ExitCode.REFUSED and out.read_bytes() == b"keep"


@pytest.mark.parametrize("args", [
    ["craft", "handshake", "--offline", "--http", "GET /", "--ftp", "USER x"],
    ["craft", "handshake", "--offline", "--payload-hex", "zz"],
    ["craft", "handshake", "--offline", "--listen"],
    ["craft", "handshake", "--offline", "--smtp", "HELO x\r\nRCPT TO:<a@b>"],
    ["craft", "udp", "--offline"],
    ["craft", "handshake"],
])
def test_usage_errors_exit_2(args, capsys):
    from dissect.cli import main
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == ExitCode.USAGE


def test_brief_leaves_out_the_field_trees(cli):
    rc, so, _ = cli("craft", "handshake", "--offline", "--brief")
    assert rc == 0 and "tcp.seq_raw" not in so and "SYN,ACK" in so
