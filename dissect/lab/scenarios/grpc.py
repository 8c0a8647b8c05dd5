"""grpc: a grpcio server and client over cleartext HTTP/2 with prior knowledge (h2c).

The service comes from ``dissect/lab/proto/lab.proto``, compiled at run time with
grpcio-tools into the run's work directory. The client makes two unary ``Say`` calls, one
server-streaming ``Count`` call (five messages) and one ``Say`` that the server fails with
NOT_FOUND, all on one channel (one TCP connection, one HTTP/2 stream per call). Wireshark
needs ``-d tcp.port==50051,http2`` to decode the port as HTTP/2.
"""

from __future__ import annotations

import importlib
import sys
from concurrent import futures
from pathlib import Path

PROTO = Path(__file__).resolve().parent.parent / "proto" / "lab.proto"
CLIENT_TIMEOUT_S = 10.0
SERVICE = "dissect.lab.Echo"


def load_stubs(workdir: str | Path):
    """Compile lab.proto into workdir/grpcgen (once) and import the generated modules."""
    from grpc_tools import protoc

    out = Path(workdir) / "grpcgen"
    if not (out / "lab_pb2_grpc.py").exists():
        out.mkdir(exist_ok=True)
        include = Path(protoc.__file__).resolve().parent / "_proto"
        rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO.parent}", f"-I{include}",
                          f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO)])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {PROTO} ({rc})")
    sys.path.insert(0, str(out))
    return importlib.import_module("lab_pb2"), importlib.import_module("lab_pb2_grpc")


def serve(params, ctx):
    import grpc

    pb2, pb2_grpc = load_stubs(params["workdir"])
    rec = ctx.rec

    class Echo(pb2_grpc.EchoServicer):
        def Say(self, request, context):  # noqa: N802 - generated name
            if request.text == "missing":
                rec.record("call", rec.now(), method="Say", status="NOT_FOUND")
                context.abort(grpc.StatusCode.NOT_FOUND, "no greeting called 'missing'")
            rec.record("call", rec.now(), method="Say", status="OK")
            return pb2.SayReply(text=request.text, length=len(request.text))

        def Count(self, request, context):  # noqa: N802
            rec.record("call", rec.now(), method="Count", status="OK", upto=request.upto)
            for n in range(1, request.upto + 1):
                yield pb2.CountReply(n=n)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.so_reuseport", 0)])
    pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{params['port']}")
    server.start()
    ctx.ready(port=params["port"], grpc_version=grpc.__version__)
    try:
        server.wait_for_termination()
    finally:
        server.stop(grace=0.5).wait(2)


def client(params, rec):
    import grpc

    pb2, pb2_grpc = load_stubs(params["workdir"])
    target = f"127.0.0.1:{params['port']}"
    rec.policy = {"target": target, "transport": "h2c prior knowledge (insecure channel)",
                  "grpc_version": grpc.__version__}
    options = [("grpc.enable_http_proxy", 0), ("grpc.primary_user_agent", "dissect-lab/0.1")]
    channel = grpc.insecure_channel(target, options=options)
    stub = pb2_grpc.EchoStub(channel)

    def unary(text):
        start = rec.now()
        try:
            reply = stub.Say(pb2.SayRequest(text=text), timeout=CLIENT_TIMEOUT_S)
            rec.record("call", start, rec.now(), path=f"/{SERVICE}/Say", status="OK",
                       request=text, reply_length=reply.length)
        except grpc.RpcError as err:
            rec.record("call", start, rec.now(), path=f"/{SERVICE}/Say", status=err.code().name,
                       request=text, details=err.details())

    unary("hello from the dissect lab")
    unary("second call on the same channel")
    start = rec.now()
    got = [r.n for r in stub.Count(pb2.CountRequest(upto=5), timeout=CLIENT_TIMEOUT_S)]
    rec.record("call", start, rec.now(), path=f"/{SERVICE}/Count", status="OK",
               streamed=got)
    unary("missing")
    channel.close()
