from __future__ import annotations

import pytest

from dissect.craft import dialogue as dl


def test_build_request_http_completes_the_request_line_and_headers():
    r = dl.build_request("http", "GET /", host="127.0.0.1", port=8080)
    assert r.data.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
    assert r.data.endswith(b"\r\n\r\n")
    assert r.first_line == "GET / HTTP/1.1"
    v6 = dl.build_request("http", "HEAD /x HTTP/1.0", host="::1", port=80)
    assert v6.data.startswith(b"HEAD /x HTTP/1.0\r\nHost: [::1]:80\r\n")


@pytest.mark.parametrize("text", ["GET / HTTP/2", "G@T /", "GET / HTTP/1.1 extra", "GET /\x01"])
def test_build_request_http_rejects_what_cannot_be_sent(text):
    with pytest.raises(ValueError):
        dl.build_request("http", text)


def test_build_request_line_protocols_add_crlf_and_refuse_injection():
    assert dl.build_request("ftp", "USER anonymous").data == b"USER anonymous\r\n"
    assert dl.build_request("smtp", "HELO x").data == b"HELO x\r\n"
    with pytest.raises(ValueError):
        dl.build_request("smtp", "HELO x\r\nMAIL FROM:<a@b>")
    with pytest.raises(ValueError):
        dl.build_request("ftp", "   ")


def test_build_request_refuses_more_than_one_segment():
    with pytest.raises(ValueError, match="at most"):
        dl.build_request("raw", payload=b"x" * (dl.MAX_REQUEST_BYTES + 1))


def test_answers_follow_the_command():
    assert dl.answer("ftp", b"USER anonymous\r\n").startswith(b"331 ")
    assert dl.answer("ftp", b"XYZ\r\n").startswith(b"502 ")
    assert dl.answer("smtp", b"EHLO x\r\n").endswith(b"250 SIZE 10240000\r\n")
    assert dl.answer("raw", b"abc") == b"abc"
    ok = dl.answer("http", b"GET / HTTP/1.1\r\n\r\n", 0)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(dl.HTTP_BODY)
    assert dl.answer("http", b"GET /nope HTTP/1.1\r\n\r\n", 0).startswith(b"HTTP/1.1 404")
    assert dl.answer("http", b"POST / HTTP/1.1\r\n\r\n", 0).startswith(b"HTTP/1.1 501")
    assert b"<html>" not in dl.answer("http", b"HEAD / HTTP/1.1\r\n\r\n", 0)


def test_answer_complete_per_protocol():
    full = dl.http_answer(b"GET / HTTP/1.1\r\n", 0)
    assert dl.answer_complete("http", full)
    assert not dl.answer_complete("http", full[:-1])
    assert not dl.answer_complete("http", full[:20])
    head = dl.http_answer(b"HEAD / HTTP/1.1\r\n", 0)
    assert dl.answer_complete("http", head, request=b"HEAD / HTTP/1.1\r\n")
    assert dl.answer_complete("smtp", dl.SMTP_REPLIES[b"EHLO"])
    assert not dl.answer_complete("smtp", b"250-localhost\r\n250-PIPELINING\r\n")
    assert not dl.answer_complete("ftp", b"220 hi")
    assert dl.answer_complete("raw", b"abcd", expected=4)
    assert not dl.answer_complete("raw", b"abc", expected=4)


def test_closes_after_quit_only():
    assert dl.closes_after("ftp", b"QUIT\r\n") and dl.closes_after("smtp", b"quit\r\n")
    assert not dl.closes_after("smtp", b"HELO x\r\n")
    assert not dl.closes_after("http", b"QUIT\r\n")
