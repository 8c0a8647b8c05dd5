from __future__ import annotations

from dissect.craft.dialogue import build_request
from dissect.craft.offline import tcp_exchange, udp_exchange
from dissect.craft.render import flag_text, ladder, packet_line, preview
from dissect.io.capture import Frame
from dissect.protocols.frame import dissect_frame


def _frames(c):
    return [Frame(i, ts, len(d), len(d), 1, 0, d) for i, (ts, d) in enumerate(c.frames, 1)]


def test_ladder_marks_isn_plus_one_and_payload_lines():
    c = tcp_exchange(app="http", request=build_request("http", "GET /").data, seed=2)
    text = ladder(_frames(c), (c.src, c.sport)).splitlines()
    rows = text[2:]
    assert "client → server" in rows[0] and "SYN " in rows[0] and f"seq={c.isn_client}" in rows[0]
    assert "server → client" in rows[1] and "SYN,ACK" in rows[1]
    assert f"ack={c.isn_client + 1} (= client ISN+1)" in rows[1]
    assert f"ack={c.isn_server + 1} (= server ISN+1)" in rows[2]
    assert '"GET / HTTP/1.1"' in rows[3] and '"HTTP/1.1 200 OK"' in rows[5]
    assert "FIN,ACK" in rows[-3] and "FIN,ACK" in rows[-2]
    assert len(rows) == len(c.frames)


def test_ladder_udp_and_escaped_payload():
    c = udp_exchange(payload=b"\x1b[31mred\x07", seed=1)
    text = ladder(_frames(c), (c.src, c.sport))
    assert "\x1b" not in text and "\\x1b[31mred\\x07" in text
    assert text.count("UDP") == 2


def test_preview_cuts_long_first_lines():
    assert preview(b"a" * 100 + b"\r\nsecond").endswith("…")
    assert preview(b"one\r\ntwo") == "one"


def test_packet_line_names_layers_addresses_and_flags():
    c = tcp_exchange(app="smtp", request=build_request("smtp", "HELO x").data, dst="::1", seed=4)
    frames = _frames(c)
    first = packet_line(frames[0], dissect_frame(frames[0]), frames[0].ts)
    assert first.split()[0] == "1" and "0.000000" in first
    assert "L2 eth · L3 ipv6 · L4 tcp" in first
    assert f"[::1]:{c.sport} → [::1]:25" in first and "[SYN]" in first
    banner = packet_line(frames[3], dissect_frame(frames[3]), frames[0].ts)
    assert "L7" in banner and "[PSH,ACK]" in banner and "len=41" in banner


def test_flag_text_order():
    assert flag_text(0x12) == "SYN,ACK" and flag_text(0x11) == "FIN,ACK" and flag_text(0) == "none"
