#!/usr/bin/env python3
"""Regenerate the lab captures committed under pcaps/ and their README.

Each entry of ``CAPTURES`` runs one lab scenario (real servers and clients in a private
network namespace, recorded with tcpdump on its loopback) and writes
``pcaps/<name>.pcap`` plus the ground truth ``pcaps/<name>.json``; then pcaps/README.md is
rewritten from the table and the ground truths. Needs root and tcpdump (see
dissect/lab). Timestamps, ports and sequence numbers differ from run to run; what the
client did (requests, retry delays, breaker decisions, loss positions) is fixed by the
seed.

    sudo python scripts/make_pcaps.py            # all
    sudo python scripts/make_pcaps.py dns-resend udp-echo   # only these captures
    python scripts/make_pcaps.py --readme-only              # README from the JSONs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dissect.lab.runner import run_scenario  # noqa: E402
from dissect.lab.scenarios import SCENARIOS  # noqa: E402

PCAPS = ROOT / "pcaps"
MAX_BYTES = 1_000_000  # repository rule: each committed capture < 1 MB

# (capture name, scenario, seed, loss %, what to look at)
CAPTURES = [
    ("http-keepalive", "http", 0, 0.0,
     "one TCP connection carrying five request/response pairs; the server writes headers "
     "and body separately, so Nagle plus the client's delayed ACK adds ~40 ms to four of them"),
    ("http-keepalive-loss", "http", 0, 8.0,
     "the same exchange with 8 % of tcp packets dropped on the input hook at seeded "
     "positions: every dropped packet is still in the capture; a dropped data segment is "
     "followed by the kernel's retransmission, a dropped pure ACK by nothing (the next "
     "ACK covers it); the ground truth counts the drops"),
    ("tls-https-sni", "https", 0, 0.0,
     "TLS 1.3 ClientHello with SNI dissect.test and ALPN http/1.1; the ground truth's "
     "client.info.tls_keylog lines decrypt it (tshark -o tls.keylog_file:FILE)"),
    ("ftp-active", "ftp-active", 0, 0.0,
     "control connection on port 21 plus three data connections the server opens to the "
     "client's PORT addresses (LIST, RETR, STOR)"),
    ("ftp-passive", "ftp-passive", 0, 0.0,
     "control connection plus three data connections the client opens to the PASV ports"),
    ("smtp-two-recipients", "smtp", 0, 0.0,
     "EHLO, MAIL FROM, two RCPT TO, DATA (354 then 250), QUIT"),
    ("dns-resend", "dns", 0, 0.0,
     "five queries; the first query for slow.dissect.test gets no answer and is resent "
     "with the same ID after 1 s (tshark marks dns.retransmission); one NXDOMAIN"),
    ("udp-echo", "udp", 0, 0.0, "six datagrams to port 7 and their echoes"),
    ("websocket-echo", "websocket", 0, 0.0,
     "HTTP/1.1 Upgrade (101), masked text and binary frames and their echoes, ping/pong, "
     "close 1000 both ways"),
    ("grpc-h2c", "grpc", 0, 0.0,
     "HTTP/2 prior-knowledge preface, SETTINGS, four gRPC calls on streams 1, 3, 5, 7 "
     "(the last ends with grpc-status 5, NOT_FOUND); decode with -d tcp.port==50051,http2"),
    ("tcp-syn-backoff-linear", "syn-backoff", 0, 0.0,
     "SYNs to a port whose SYNs are dropped, tcp_syn_linear_timeouts=4: retransmissions at "
     "about 1, 2, 3, 4, 5, 7 and 11 s (five 1 s intervals, then 2 and 4 s), then the "
     "client gives up at 12 s"),
    ("tcp-syn-backoff-classic", "syn-backoff-classic", 0, 0.0,
     "the same with tcp_syn_linear_timeouts=0: retransmissions at about 1, 3, 7 and 15 s "
     "(doubling from 1 s), client gives up at 16 s"),
    ("http-retry-backoff", "http-retry", 0, 0.0,
     "four GET attempts on four connections: 503 with Retry-After: 1 (honoured), 503, 500, "
     "200; the delays between them are in the ground truth (delay_s, gap_s)"),
    ("http-retry-idempotent-post", "http-retry-post", 0, 0.0,
     "POST attempts with one Idempotency-Key: 500, 503, 201, then a deliberate duplicate "
     "answered from the server's store (Idempotent-Replayed: true)"),
    ("http-circuit-breaker", "circuit-breaker", 0, 0.0,
     "calls every 0.2 s: three refused connections (RST) open the breaker; silence while "
     "open; half-open probes meet refusal, then 503, then 200 which closes it"),
    ("http-retry-full", "http-retry-full", 5, 0.0,
     "a GET retried after five 503s with exponential backoff with full jitter: `dissect retries` fits the model"),
    ("http-retry-constant", "http-retry-constant", 5, 0.0,
     "a GET retried after five 503s with a constant delay: `dissect retries` fits the model"),
    ("http-retry-linear", "http-retry-linear", 5, 0.0,
     "a GET retried after five 503s with a linearly growing delay (base * n): `dissect retries` fits the model"),
    ("http-retry-exponential", "http-retry-exponential", 5, 0.0,
     "a GET retried after five 503s with exponential backoff without jitter, capped at 2 s: `dissect retries` fits the model"),
    ("http-retry-equal", "http-retry-equal", 5, 0.0,
     "a GET retried after five 503s with exponential backoff with equal jitter: `dissect retries` fits the model"),
    ("http-retry-decorrelated", "http-retry-decorrelated", 5, 0.0,
     "a GET retried after five 503s with decorrelated jitter (min(cap, uniform(base, 3 * previous))): `dissect retries` fits the model"),
    ("http-tiers", "tiers", 0, 0.0,
     "client -> gateway -> backend with retries at two tiers: `dissect cascades` rebuilds "
     "the trees (amplification 1 -> 3 -> 7 for the first user request)"),
    ("http-tiers-breaker", "tiers-breaker", 0, 0.0,
     "three tiers with a circuit breaker in the gateway: `dissect cascades` shows the "
     "requests it short-circuited (0 attempts reach the backend while it is open) and its "
     "open / half-open / closed transitions"),
    ("grpc-tiers", "tiers-grpc", 0, 0.0,
     "three tiers over gRPC (HTTP/2 streams on persistent channels): `dissect cascades` "
     "rebuilds the trees (amplification 1 -> 3 -> 7 for the first user request)"),
    ("tcp-tiers", "tiers-tcp", 0, 0.0,
     "three tiers over a plain TCP line protocol: `dissect cascades` links the calls from "
     "request/response turns alone (1 -> 1 -> 3 for the first call)"),
]


def readme(rows: list[tuple[str, str, int, float, str, dict]]) -> str:
    out = [
        "# pcaps/",
        "",
        "Small captures of real servers and clients, recorded by the loopback lab",
        "(`dissect/lab`, `dissect lab SCENARIO -w FILE`) and regenerated by",
        "`scripts/make_pcaps.py` (as root). Each was recorded with tcpdump",
        "(`--immediate-mode -B 16384 -U`) on `lo` inside a private network namespace",
        "whose `lo` has MTU 1500, gso_max_size 1500 and gso_max_segs 1, so TCP segments",
        "are at most 1448 bytes of payload as on Ethernet. Every address is 127.0.0.1 or",
        "::1. Beside each capture, `<name>.json` is the ground truth: what the client",
        "did by its own clock (each request/attempt with wall-clock start and end,",
        "intervals `gap_s`/`wait_s`, outcomes, the policy and its parameters), the",
        "server's own record, the namespace's sysctls and nftables ruleset, the",
        "loss positions, and tcpdump's statistics.",
        "",
        "Timestamps, ports and sequence numbers differ from run to run; what the client",
        "does (request plan, retry delays, breaker decisions, payload bytes, loss",
        "positions) is fixed by the seed.",
        "",
    ]
    for name, scenario, seed, loss, note, truth in rows:
        spec = SCENARIOS[scenario]
        cap = truth["capture"]
        out += [
            f"## {name}.pcap",
            "",
            f"- provenance: `{truth['provenance']}`",
            f"- scenario `{scenario}`, seed {seed}, loss {loss:g} %: {spec.summary}.",
            f"- {cap.get('captured', '?')} packets, {cap['bytes']} bytes, "
            f"{cap.get('dropped_by_kernel', 0)} dropped by the kernel"
            + (f", {truth['loss']['dropped_packets']} dropped by the loss rule" if loss else "")
            + f"; client outcome: {truth['client'].get('outcome')}.",
            f"- what it shows: {note}.",
            "",
        ]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="capture names to regenerate (default: all)")
    ap.add_argument("--readme-only", action="store_true",
                    help="rewrite pcaps/README.md from the committed ground truths only")
    args = ap.parse_args(argv)
    wanted = set() if args.readme_only else set(args.names) or {c[0] for c in CAPTURES}
    unknown = set(args.names) - {c[0] for c in CAPTURES}
    if unknown:
        ap.error(f"unknown capture name(s): {', '.join(sorted(unknown))}")
    PCAPS.mkdir(exist_ok=True)
    rows = []
    for name, scenario, seed, loss, note in CAPTURES:
        out = PCAPS / f"{name}.pcap"
        if name in wanted:
            line = f"dissect lab {scenario} -w {out.name} --seed {seed}" + \
                   (f" --loss {loss:g}" if loss else "")
            print(f"{name}: {line}", flush=True)
            result = run_scenario(scenario, out, loss=loss, seed=seed, force=True,
                                  command_line=line)
            size = out.stat().st_size
            if size >= MAX_BYTES:
                print(f"{out} is {size} bytes, over the {MAX_BYTES} limit", file=sys.stderr)
                return 1
            truth = result.truth
        else:
            try:
                truth = json.loads((PCAPS / f"{name}.json").read_text())
            except OSError:
                continue
        rows.append((name, scenario, seed, loss, note, truth))
    (PCAPS / "README.md").write_text(readme(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
