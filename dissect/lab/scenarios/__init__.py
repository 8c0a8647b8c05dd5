"""The lab's scenarios, declared as one table.

Each entry names the module whose ``serve(params, ctx)`` and ``client(params, rec)`` do
the real work in child processes, the committed capture it produces
(``pcaps/<pcap>.pcap``), default parameters, fast parameters for tests, per-namespace
sysctls, extra nftables rules for the namespace's input hook, the Python packages it
needs, and ``decode_as`` hints (port -> Wireshark dissector) for ports Wireshark does not
bind by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from dissect.lab.netns import LabError


def _frozen(d: dict | None = None) -> MappingProxyType:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class Scenario:
    name: str
    protocol: str
    pcap: str
    module: str
    summary: str
    server: bool = True
    server_func: str = "serve"
    client_func: str = "client"
    params: MappingProxyType = field(default_factory=_frozen)
    test_params: MappingProxyType = field(default_factory=_frozen)
    sysctls: tuple[tuple[str, str], ...] = ()
    nft_rules: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    decode_as: tuple[tuple[str, str], ...] = ()
    client_timeout_s: float = 60.0

    def merged_params(self, overrides: dict | None = None, *, fast: bool = False) -> dict:
        params = dict(self.params)
        if fast:
            params.update(self.test_params)
        params.update(overrides or {})
        return params


_W = "dissect.lab.scenarios."

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("http", "http", "http-keepalive", _W + "web",
             "python http.server (HTTP/1.1) and an http.client client: four GETs (one 404) "
             "and a form POST on one keep-alive connection",
             server_func="serve_http", client_func="client_http",
             params=_frozen({"port": 80})),
    Scenario("https", "tls", "tls-https-sni", _W + "web",
             "the same HTTP/1.1 exchange inside TLS: a self-signed certificate for "
             "dissect.test made at run time; client sends SNI dissect.test and ALPN http/1.1",
             server_func="serve_https", client_func="client_https",
             params=_frozen({"port": 443, "sni": "dissect.test"}), requires=("cryptography",)),
    Scenario("ftp-active", "ftp", "ftp-active", _W + "ftp",
             "pyftpdlib server and ftplib client in active mode (PORT): login, PWD, LIST, "
             "RETR, STOR, QUIT; the server opens the data connections",
             params=_frozen({"port": 21, "passive": False}), requires=("pyftpdlib",)),
    Scenario("ftp-passive", "ftp", "ftp-passive", _W + "ftp",
             "pyftpdlib server and ftplib client in passive mode (PASV): login, PWD, LIST, "
             "RETR, STOR, QUIT; the client opens the data connections",
             params=_frozen({"port": 21, "passive": True}), requires=("pyftpdlib",)),
    Scenario("smtp", "smtp", "smtp-two-recipients", _W + "smtp",
             "aiosmtpd server and smtplib client: EHLO, MAIL FROM, RCPT TO x2, DATA, QUIT",
             params=_frozen({"port": 25}), requires=("aiosmtpd",)),
    Scenario("dns", "dns", "dns-resend", _W + "dns",
             "dnslib UDP server answering A/AAAA for dissect.test names (NXDOMAIN otherwise); "
             "it ignores the first query for slow.dissect.test and the client resends it "
             "with the same ID after its timeout",
             params=_frozen({"port": 53, "resend_timeout_s": 1.0, "max_tries": 3}),
             test_params=_frozen({"resend_timeout_s": 0.4}), requires=("dnslib",)),
    Scenario("udp", "udp", "udp-echo", _W + "udp",
             "a UDP echo server (port 7) and a client sending text and binary datagrams",
             params=_frozen({"port": 7, "count": 6})),
    Scenario("websocket", "websocket", "websocket-echo", _W + "websocket",
             "websockets (sync API) echo server and client, no compression: text, binary, "
             "ping/pong, close 1000",
             params=_frozen({"port": 80}), requires=("websockets",)),
    Scenario("grpc", "grpc", "grpc-h2c", _W + "grpc",
             "grpcio server and client over cleartext HTTP/2 (prior knowledge), service "
             "compiled at run time by grpcio-tools from dissect/lab/proto/lab.proto: two "
             "unary calls, one server-streaming call, one call failing with NOT_FOUND",
             params=_frozen({"port": 50051}), requires=("grpc", "grpc_tools"),
             decode_as=(("tcp.port==50051", "http2"),)),
    Scenario("syn-backoff", "tcp", "tcp-syn-backoff-linear", _W + "syn_backoff",
             "a client connects to port 9 whose SYNs nftables drops on input (so each SYN "
             "is visible); kernel SYN retransmissions with tcp_syn_linear_timeouts=4 "
             "(on this kernel: five intervals of 1 s, then 2, 4, 8 s) until the client gives up",
             server=False, params=_frozen({"port": 9, "give_up_s": 12.0}),
             test_params=_frozen({"give_up_s": 4.0}),
             sysctls=(("net.ipv4.tcp_syn_linear_timeouts", "4"),),
             nft_rules=("tcp dport 9 tcp flags & (syn|ack) == syn counter drop",)),
    Scenario("syn-backoff-classic", "tcp", "tcp-syn-backoff-classic", _W + "syn_backoff",
             "as syn-backoff with tcp_syn_linear_timeouts=0: the classic 1, 2, 4, 8 s "
             "exponential SYN backoff",
             server=False, params=_frozen({"port": 9, "give_up_s": 16.0}),
             test_params=_frozen({"give_up_s": 4.0}),
             sysctls=(("net.ipv4.tcp_syn_linear_timeouts", "0"),),
             nft_rules=("tcp dport 9 tcp flags & (syn|ack) == syn counter drop",)),
    Scenario("http-retry", "http", "http-retry-backoff", _W + "http_retry",
             "a server answering 503 (one with Retry-After: 1) then 500 for the first "
             "attempts, then 200; a GET client retrying with exponential backoff and full "
             "jitter (base and factor drawn from the seed), one connection per attempt",
             params=_frozen({"port": 80, "method": "GET", "fail_codes": [503, 503, 500],
                             "retry_after": {"1": 1}, "max_attempts": 6})),
    Scenario("http-retry-post", "http", "http-retry-idempotent-post", _W + "http_retry",
             "as http-retry with a POST carrying an Idempotency-Key: the server answers "
             "503/500, then 201, and replays the stored 201 for a repeated key",
             params=_frozen({"port": 80, "method": "POST", "fail_codes": [500, 503],
                             "retry_after": {}, "max_attempts": 6, "replay_check": True})),
    Scenario("http-retry-full", "http", "http-retry-full", _W + "http_retry",
             "a GET client retrying with exponential backoff and full jitter (base and factor "
             "from the seed) against a server failing the first five attempts with 503",
             params=_frozen({"port": 80, "method": "GET", "policy": "full",
                             "fail_codes": [503, 503, 503, 503, 503], "retry_after": {},
                             "max_attempts": 7})),
    Scenario("http-retry-constant", "http", "http-retry-constant", _W + "http_retry",
             "a GET client retrying with a constant delay (base and factor from the seed) against a "
             "server failing the first five attempts with 503",
             params=_frozen({"port": 80, "method": "GET", "policy": "constant",
                             "fail_codes": [503, 503, 503, 503, 503], "retry_after": {},
                             "max_attempts": 7})),
    Scenario("http-retry-linear", "http", "http-retry-linear", _W + "http_retry",
             "a GET client retrying with a linearly growing delay (base and factor from the seed) against a "
             "server failing the first five attempts with 503",
             params=_frozen({"port": 80, "method": "GET", "policy": "linear",
                             "fail_codes": [503, 503, 503, 503, 503], "retry_after": {},
                             "max_attempts": 7})),
    Scenario("http-retry-exponential", "http", "http-retry-exponential", _W + "http_retry",
             "a GET client retrying with exponential backoff without jitter (base and factor from the seed) against a "
             "server failing the first five attempts with 503",
             params=_frozen({"port": 80, "method": "GET", "policy": "exponential",
                             "fail_codes": [503, 503, 503, 503, 503], "retry_after": {},
                             "max_attempts": 7})),
    Scenario("http-retry-equal", "http", "http-retry-equal", _W + "http_retry",
             "a GET client retrying with exponential backoff with equal jitter (base and factor from the seed) against a "
             "server failing the first five attempts with 503",
             params=_frozen({"port": 80, "method": "GET", "policy": "equal",
                             "fail_codes": [503, 503, 503, 503, 503], "retry_after": {},
                             "max_attempts": 7})),
    Scenario("http-retry-decorrelated", "http", "http-retry-decorrelated", _W + "http_retry",
             "a GET client retrying with decorrelated jitter (base and factor from the seed) against a "
             "server failing the first five attempts with 503",
             params=_frozen({"port": 80, "method": "GET", "policy": "decorrelated",
                             "fail_codes": [503, 503, 503, 503, 503], "retry_after": {},
                             "max_attempts": 7})),
    Scenario("tiers", "http", "http-tiers", _W + "tiers",
             "three tiers: a client (3 attempts) -> a gateway (3 backend attempts per "
             "request) -> a backend failing the first 6 requests from the gateway; plus an unrelated client "
             "calling the backend directly",
             params=_frozen({"port": 8081, "backend_failures": 6, "gateway_backoff_s": 0.05,
                             "client_backoff_s": 0.1})),
    Scenario("tiers-breaker", "http", "http-tiers-breaker", _W + "tiers",
             "three tiers with a circuit breaker in the gateway (3 backend failures -> open "
             "0.6 s, then one half-open probe): while it is open the gateway answers 503 "
             "without calling the backend; 5 user requests, each retried up to 3 times",
             params=_frozen({"port": 8081, "backend_failures": 4, "gateway_backoff_s": 0.05,
                             "client_backoff_s": 0.1, "user_requests": 5, "user_gap_s": 0.3,
                             "breaker": {"failure_threshold": 3, "open_s": 0.6}})),
    Scenario("tiers-grpc", "grpc", "grpc-tiers", _W + "tiers_grpc",
             "three tiers over gRPC (one HTTP/2 channel per hop): a client (3 attempts) -> "
             "a gateway (3 backend attempts per call) -> a backend failing its first 6 calls "
             "with UNAVAILABLE",
             params=_frozen({"port": 8081, "backend_failures": 6, "gateway_backoff_s": 0.05,
                             "client_backoff_s": 0.1}), requires=("grpc", "grpc_tools"),
             decode_as=(("tcp.port==8081", "http2"), ("tcp.port==8082", "http2"))),
    Scenario("tiers-tcp", "tcp", "tcp-tiers", _W + "tiers",
             "three tiers over a plain TCP line protocol (CALL path -> STATUS code), with "
             "the retries of the tiers scenario: request trees from request/response turns",
             params=_frozen({"port": 8081, "backend_failures": 6, "gateway_backoff_s": 0.05,
                             "client_backoff_s": 0.1, "proto": "tcp"})),
    Scenario("circuit-breaker", "http", "http-circuit-breaker", _W + "breaker",
             "a client with a circuit breaker (3 failures -> open 1 s, no calls -> half-open "
             "one probe -> closed or open again) calling every 0.2 s while the server is down "
             "(connection refused), then answering 503, then 200",
             params=_frozen({"port": 80, "down_s": 1.5, "unavailable_s": 2.0, "run_s": 6.0,
                             "interval_s": 0.2, "failure_threshold": 3, "open_s": 1.0}),
             test_params=_frozen({"down_s": 0.8, "unavailable_s": 1.0, "run_s": 3.6,
                                  "open_s": 0.6})),
)}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise LabError(f"no lab scenario named {name!r}; known: {', '.join(SCENARIOS)}",
                       protocol="lab") from None
