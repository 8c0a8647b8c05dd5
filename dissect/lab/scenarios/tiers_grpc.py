"""tiers-grpc: the three tiers over gRPC (grpcio, cleartext HTTP/2 with prior knowledge),
one persistent channel per hop, one HTTP/2 stream per call.

client (127.0.0.1) -> gateway (127.0.0.1:8081) -> backend (127.0.0.3:8082). gRPC's Python
channels cannot choose their source address, so the gateway listens on the address its
own calls leave from (127.0.0.1): the gateway host is the server of one hop and the client
of the next, as in the HTTP variant. The backend fails its first ``backend_failures`` calls
with UNAVAILABLE; the gateway tries the backend up to 3 times per call (``gateway_backoff_s``
apart) and fails with UNAVAILABLE when all fail; the client tries the gateway up to 3
times for each of ``user_requests`` requests. Automatic gRPC retries are disabled, so every
retry is the application's own. Every tier records what it really sent."""

from __future__ import annotations

import threading
import time
from concurrent import futures

from dissect.lab.scenarios.grpc import load_stubs

GATEWAY = ("127.0.0.1", 8081)
BACKEND = ("127.0.0.3", 8082)
SERVICE = "dissect.lab.Echo"
CALL_TIMEOUT_S = 5.0
OPTIONS = [("grpc.enable_retries", 0), ("grpc.enable_http_proxy", 0),
           ("grpc.primary_user_agent", "dissect-lab/0.1"), ("grpc.so_reuseport", 0)]


def serve(params, ctx):
    import grpc

    pb2, pb2_grpc = load_stubs(params["workdir"])
    rec = ctx.rec
    failures = int(params["backend_failures"])
    gap = float(params["gateway_backoff_s"])
    seen = {"n": 0}
    lock = threading.Lock()

    class Backend(pb2_grpc.EchoServicer):
        def Say(self, request, context):  # noqa: N802 - generated name
            with lock:
                seen["n"] += 1
                n = seen["n"]
            time.sleep(0.02)                       # the backend's own work
            ok = n > failures
            rec.record("backend", rec.now(), request=request.text,
                       status="OK" if ok else "UNAVAILABLE")
            if not ok:
                context.abort(grpc.StatusCode.UNAVAILABLE, "backend warming up")
            return pb2.SayReply(text=request.text, length=len(request.text))

    channel = grpc.insecure_channel(f"{BACKEND[0]}:{BACKEND[1]}", options=OPTIONS)
    backend = pb2_grpc.EchoStub(channel)

    class Gateway(pb2_grpc.EchoServicer):
        def Say(self, request, context):  # noqa: N802
            for attempt in range(1, 4):
                start = rec.now()
                try:
                    reply = backend.Say(pb2.SayRequest(text=request.text),
                                        timeout=CALL_TIMEOUT_S)
                    rec.record("gateway-attempt", start, rec.now(), request=request.text,
                               attempt=attempt, status="OK")
                    return reply
                except grpc.RpcError as err:
                    rec.record("gateway-attempt", start, rec.now(), request=request.text,
                               attempt=attempt, status=err.code().name)
                time.sleep(gap)
            context.abort(grpc.StatusCode.UNAVAILABLE, "backend unavailable")

    servers = []
    for addr, impl in ((BACKEND, Backend()), (GATEWAY, Gateway())):
        s = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=OPTIONS)
        pb2_grpc.add_EchoServicer_to_server(impl, s)
        s.add_insecure_port(f"{addr[0]}:{addr[1]}")
        s.start()
        servers.append(s)
    rec.policy = {"proto": "grpc", "backend_failures": failures, "gateway_attempts": 3,
                  "gateway_backoff_s": gap}
    ctx.ready(port=GATEWAY[1])
    try:
        servers[-1].wait_for_termination()
    finally:
        channel.close()
        for s in servers:
            s.stop(grace=0.5).wait(2)


def client(params, rec):
    import grpc

    pb2, pb2_grpc = load_stubs(params["workdir"])
    gap = float(params["client_backoff_s"])
    users = int(params.get("user_requests", 2))
    rec.policy = {"client_attempts": 3, "client_backoff_s": gap, "user_requests": users}
    channel = grpc.insecure_channel(f"{GATEWAY[0]}:{GATEWAY[1]}", options=OPTIONS)
    stub = pb2_grpc.EchoStub(channel)
    for user_request in range(1, users + 1):
        for attempt in range(1, 4):
            start = rec.now()
            try:
                stub.Say(pb2.SayRequest(text=f"order {user_request}"), timeout=CALL_TIMEOUT_S)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
            rec.record("attempt", start, rec.now(), user_request=user_request,
                       attempt=attempt, status=code)
            if code == "OK":
                break
            time.sleep(gap)
        time.sleep(0.2)
    channel.close()
    rec.outcome = "completed"
