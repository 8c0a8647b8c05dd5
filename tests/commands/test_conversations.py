"""``dissect conversations`` and ``dissect cleartext`` end to end on lab captures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis" / "findings"))
from conftest import PCAPS  # noqa: E402
import engine_helper  # noqa: E402


@pytest.fixture
def dispatcher(monkeypatch):
    if not engine_helper.real_dispatcher():
        import types
        mod = types.ModuleType("dissect.analysis.app.dispatch")
        mod.AppDispatcher = engine_helper.StandInDispatcher
        monkeypatch.setitem(sys.modules, "dissect.analysis.app.dispatch", mod)


def invoke(cmd, *args):
    from click.testing import CliRunner
    r = CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout


def test_conversations_text_golden_udp_echo(dispatcher):
    from dissect.commands.conversations import conversations
    code, out = invoke(conversations, PCAPS / "udp-echo.pcap")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["conn", "client", "->", "server", "app", "model", "connection",
                                "transport", "reliability", "use"]
    row = lines[2]
    for cell in ("udp/0", "-> 127.0.0.1:7", "client-server", "stateless request-response",
                 "UDP", "no recovery at transport (UDP)", "echo (diagnostics)"):
        assert cell in row
    assert lines[4] == "evidence:"
    assert lines[5] == "  conn udp/0:"
    assert lines[7] == "    connection  6 datagrams answered by 6: one reply per request"
    assert lines[10].startswith("    use         port 7 (echo)")


def test_conversations_jsonl(dispatcher):
    from dissect.commands.conversations import conversations
    code, out = invoke(conversations, PCAPS / "ftp-active.pcap", "--format", "jsonl")
    assert code == 0
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert [r["type"] for r in recs] == ["conversation"] * 4
    assert sorted(r["protocol"] for r in recs) == ["ftp", "ftp-data", "ftp-data", "ftp-data"]
    code, out = invoke(conversations, PCAPS / "ftp-active.pcap", "--no-evidence")
    assert "evidence:" not in out


def test_cleartext_masked_unless_show_secrets(dispatcher):
    from dissect.commands.conversations import cleartext
    code, out = invoke(cleartext, PCAPS / "ftp-active.pcap")
    assert code == 0
    assert "cleartext-password" in out and "l****d" in out and "lab-password" not in out
    code, out = invoke(cleartext, PCAPS / "ftp-active.pcap", "--show-secrets",
                       "--format", "jsonl")
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert [r["secret"] for r in recs if r["kind"] == "cleartext-password"] == ["lab-password"]
    code, out = invoke(cleartext, PCAPS / "udp-echo.pcap")
    assert code == 0 and out.strip() == \
        "no cleartext credentials, secrets or weak encryption found"
