"""Shared entry point of the lab's child processes (see server.py and client.py).

Run inside the namespace as ``python -m dissect.lab.server SCENARIO --params JSON --truth
PATH`` (or ``dissect.lab.client``). The scenario module's ``serve``/``client`` function does
the real work; this wrapper turns SIGTERM into a normal exit and always writes the
ground-truth record, even when the role fails (then with ``outcome: "error: ..."``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import traceback

from dissect.lab.truth import Recorder

EXIT_ROLE_FAILED = 3


class ServerContext:
    """Handed to a scenario's ``serve``: announce readiness, record what the server did."""

    def __init__(self, rec: Recorder):
        self.rec = rec

    def ready(self, **info) -> None:
        self.rec.info.update(info)
        sys.stdout.write("READY " + json.dumps(info) + "\n")
        sys.stdout.flush()


def main(role: str, argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m dissect.lab.{role}")
    ap.add_argument("scenario")
    ap.add_argument("--params", default="{}")
    ap.add_argument("--truth", required=True)
    args = ap.parse_args(argv)

    from dissect.lab.scenarios import get  # noqa: PLC0415 (keeps child start-up lean)

    spec = get(args.scenario)
    params = json.loads(args.params)
    module = importlib.import_module(spec.module)
    rec = Recorder(role, spec.name, params.get("seed"))

    def on_term(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    code = 0
    try:
        if role == "server":
            getattr(module, spec.server_func)(params, ServerContext(rec))
        else:
            getattr(module, spec.client_func)(params, rec)
            if rec.outcome is None:
                rec.outcome = "completed"
    except SystemExit:
        pass
    except BaseException as exc:  # the record must say what went wrong
        rec.outcome = f"error: {type(exc).__name__}: {exc}"
        traceback.print_exc()
        code = EXIT_ROLE_FAILED
    finally:
        rec.write(args.truth)
    return code
