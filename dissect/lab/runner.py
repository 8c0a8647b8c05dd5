"""Run one lab scenario end to end and write the capture plus its ground truth.

Order of a run (all inside one fresh namespace, torn down on every exit path):

1. sysctls and nftables rules of the scenario, plus the loss rule when ``loss > 0``;
2. tcpdump starts and says it is listening (so the capture holds everything);
3. the server child starts and prints ``READY``;
4. the client child runs to completion (bounded by the scenario's timeout);
5. a short settle so the last FIN/ACKs land, then the server gets SIGTERM (it writes its
   own record), then tcpdump gets SIGINT and flushes;
6. the capture is moved to ``out`` and ``out`` with suffix ``.json`` gets the ground truth.

Loss: the nftables input hook drops the tcp/udp packets whose running index (``numgen
inc mod 1000``) falls in a set of positions drawn from the seed, so the pattern is
reproducible given the same packet order. Dropping on input keeps the lost packet in the
loopback capture, followed by the kernel's real retransmission.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dissect
from dissect.errors import RefusedError
from dissect.lab.netns import (
    LabError,
    Namespace,
    kill_child,
    remove_stale_namespaces,
    signals_raise,
    wait_for_line,
)
from dissect.lab.scenarios import Scenario, get
from dissect.lab.tcpdump import Tcpdump

SCHEMA = "dissect.lab.run/1"
LOSS_MODULUS = 1000            # loss positions per 1000 packets: 0.1 % resolution
SERVER_READY_TIMEOUT_S = 60.0  # grpc compiles its .proto at start: a few seconds on 2 cores
SETTLE_S = 0.3                 # after the client: lets the last FIN/ACK exchange land
NFT_TABLE = "dissect_lab"

_REQUIRES_PIP = {"grpc": "grpcio", "grpc_tools": "grpcio-tools", "cryptography": "cryptography",
                 "pyftpdlib": "pyftpdlib", "aiosmtpd": "aiosmtpd", "dnslib": "dnslib",
                 "websockets": "websockets"}


@dataclass(frozen=True)
class LabResult:
    pcap: Path
    truth_path: Path
    truth: dict


def truth_path_for(out: str | Path) -> Path:
    return Path(out).with_suffix(".json")


def loss_positions(pct: float, seed: int) -> list[int]:
    """Which packet indices (mod LOSS_MODULUS) the loss rule drops, drawn from `seed`."""
    count = round(pct * LOSS_MODULUS / 100)
    return sorted(random.Random(f"loss:{seed}").sample(range(LOSS_MODULUS), count))


def nft_ruleset(spec: Scenario, positions: list[int]) -> str | None:
    rules = list(spec.nft_rules)
    if positions:
        rules.append("meta l4proto { tcp, udp } numgen inc mod %d { %s } counter drop"
                     % (LOSS_MODULUS, ", ".join(map(str, positions))))
    if not rules:
        return None
    body = "\n".join(f"    {r}" for r in rules)
    return (f"table inet {NFT_TABLE} {{\n  chain input {{\n"
            f"    type filter hook input priority 0; policy accept;\n{body}\n  }}\n}}\n")


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    root = str(Path(dissect.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_requirements(spec: Scenario) -> None:
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        pkgs = " ".join(_REQUIRES_PIP.get(m, m) for m in missing)
        raise LabError(f"scenario {spec.name} needs the Python package(s) {pkgs}, which are not "
                       f"installed (pip install {pkgs})", protocol="lab")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _log_tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""


def run_scenario(name: str, out: str | Path, *, loss: float = 0.0, seed: int = 0,
                 force: bool = False, params: dict | None = None, fast: bool = False,
                 command_line: str | None = None) -> LabResult:
    """Run scenario `name`, write the capture to `out` and the ground truth beside it.

    `params` override the scenario's defaults; `fast` applies its short test parameters.
    """
    spec = get(name)
    out = Path(out)
    truth_out = truth_path_for(out)
    if out.suffix == ".json":
        raise RefusedError(f"{out}: the capture must not end in .json (the ground truth goes "
                           "there)", protocol="lab")
    for path in (out, truth_out):
        if path.exists() and not force:
            raise RefusedError(f"{path} exists; use --force to overwrite it", protocol="lab")
    if not out.parent.is_dir():
        raise LabError(f"{out.parent} is not a directory", protocol="lab")
    if not 0 <= loss < 100:
        raise LabError(f"loss must be a percentage in [0, 100), not {loss}", protocol="lab")
    check_requirements(spec)
    remove_stale_namespaces()  # left by a run whose process was SIGKILLed

    run_params = spec.merged_params(params, fast=fast)
    run_params["seed"] = seed
    positions = loss_positions(loss, seed)
    ruleset = nft_ruleset(spec, positions)
    env = _child_env()
    workdir = Path(tempfile.mkdtemp(prefix="dissect-lab-"))
    run_params["workdir"] = str(workdir)
    pcap_tmp = workdir / "capture.pcap"
    started = time.time()
    try:
        with signals_raise(), Namespace() as ns:
            for key, value in spec.sysctls:
                ns.sysctl(key, value)
            if ruleset:
                ns.nft(ruleset)
            dump = Tcpdump(ns, pcap_tmp)
            dump.start()
            server_log = workdir / "server.log"
            client_log = workdir / "client.log"
            server = None
            if spec.server:
                with open(server_log, "wb") as log:
                    server = ns.spawn(ns.python_argv("dissect.lab.server", spec.name, "--params",
                                                     json.dumps(run_params), "--truth",
                                                     str(workdir / "server.json")),
                                      env=env, stdout=subprocess.PIPE, stderr=log)
                try:
                    wait_for_line(server.stdout, "READY", SERVER_READY_TIMEOUT_S, server)
                except LabError as exc:
                    raise LabError(f"{spec.name} server did not start: {exc.reason} "
                                   f"{_log_tail(server_log)}", protocol="lab") from None
            with open(client_log, "wb") as log:
                client = ns.spawn(ns.python_argv("dissect.lab.client", spec.name, "--params",
                                                 json.dumps(run_params), "--truth",
                                                 str(workdir / "client.json")),
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                client.wait(timeout=spec.client_timeout_s + run_params.get("give_up_s", 0))
            except subprocess.TimeoutExpired:
                kill_child(client)
                raise LabError(f"{spec.name} client did not finish within "
                               f"{spec.client_timeout_s:.0f} s: {_log_tail(client_log)}",
                               protocol="lab") from None
            client_rc = client.returncode
            time.sleep(SETTLE_S)
            server_died = server.poll() if server is not None else None
            if server is not None:
                kill_child(server)
                time.sleep(0.1)
            stats = dump.stop()
            nft_text = ns.nft_list() if ruleset else ""
            ns_info = {"name": ns.name, "interface": "lo", "mtu": ns.mtu,
                       "gso_max_size": ns.mtu, "gso_max_segs": 1,
                       "sysctls": {"net.ipv4.tcp_syn_linear_timeouts":
                                   ns.read_sysctl("net.ipv4.tcp_syn_linear_timeouts"),
                                   "net.ipv4.tcp_syn_retries":
                                   ns.read_sysctl("net.ipv4.tcp_syn_retries"),
                                   **ns.sysctls},
                       "nft_ruleset": nft_text}
            argv_tcpdump = " ".join(dump.argv[:-1] + [out.name])
        if server_died is not None:
            raise LabError(f"{spec.name} server exited ({server_died}) before the client "
                           f"finished: {_log_tail(server_log)}", protocol="lab")
        client_truth = _read_json(workdir / "client.json")
        if client_rc != 0 or client_truth is None:
            raise LabError(f"{spec.name} client failed (exit {client_rc}): "
                           f"{_log_tail(client_log)}", protocol="lab")
        server_truth = _read_json(workdir / "server.json") if spec.server else None
        shutil.move(str(pcap_tmp), out)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        dropped = [int(n) for n in re.findall(r"numgen inc .*counter packets (\d+)", nft_text)]
        public_params = {k: v for k, v in run_params.items() if k != "workdir"}
        truth = {
            "schema": SCHEMA,
            "scenario": spec.name,
            "protocol": spec.protocol,
            "summary": spec.summary,
            "provenance": (command_line or f"dissect lab {spec.name} -w {out.name} --seed {seed}"
                           + (f" --loss {loss:g}" if loss else ""))
                          + f" (dissect {dissect.__version__}, Linux {platform.release()}, "
                          f"Python {platform.python_version()}, tcpdump in a private netns)",
            "seed": seed,
            "params": public_params,
            "started": round(started, 6),
            "ended": round(time.time(), 6),
            "namespace": ns_info,
            "capture": {"file": out.name, "sha256": digest, "bytes": out.stat().st_size,
                        "command": argv_tcpdump, **stats},
            "loss": {"pct": loss, "modulus": LOSS_MODULUS, "positions": positions,
                     "rule": "nftables input hook: tcp/udp packets whose running index mod "
                             f"{LOSS_MODULUS} is in positions are dropped (seen in the capture, "
                             "then retransmitted by the kernel)" if positions else None,
                     "dropped_packets": dropped[0] if dropped else 0},
            "decode_as": dict(spec.decode_as),
            "client": client_truth,
            "server": server_truth,
        }
        tmp = truth_out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(truth, indent=1) + "\n")
        os.replace(tmp, truth_out)
        return LabResult(out, truth_out, truth)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

