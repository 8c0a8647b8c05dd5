"""``dissect analyze --format parquet -o DIR``: the analysis as four Parquet tables.

    DIR/packets.parquet       one row per frame (the JSONL packet record, flattened)
    DIR/connections.parquet   one row per TCP connection / UDP flow
    DIR/retry_chains.parquet  one row per retry chain, storm or circuit breaker
    DIR/transactions.parquet  one row per application record (HTTP exchange, DNS query, ...)

Every table but packets also has ``record``: the full JSONL record as JSON text, so nothing
is lost by flattening. Connection ids are strings in every table ("7" for tcp.stream 7,
"udp/3" for a UDP flow). Packets are written in row groups of :data:`ROW_GROUP` frames as
they arrive, so memory does not grow with the capture. The schemas are the ``*_SCHEMA``
constants below (and in the README).
"""

from __future__ import annotations

import json
import os

from dissect.errors import DissectError

# Frames per Parquet row group of packets.parquet (and per write).
ROW_GROUP = 65536


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DissectError("--format parquet needs pyarrow (pip install pyarrow)") from None
    return pa, pq


def schemas():
    pa, _ = _pa()
    s, i64, i32, f64 = pa.string(), pa.int64(), pa.int32(), pa.float64()
    ls = pa.list_(s)
    packets = pa.schema([
        ("frame", i64), ("ts", f64), ("caplen", i32), ("len", i32), ("interface", i32),
        ("protocols", s), ("src", s), ("dst", s), ("conn", s), ("flags", ls),
        ("ack_rtt", f64), ("acks_frame", i64), ("bytes_in_flight", i64),
        ("duplicate_ack_num", i64), ("duplicate_ack_frame", i64), ("rto", f64),
        ("rto_frame", i64), ("initial_rtt", f64), ("bytemap", ls), ("bytemap_reason", s),
        ("anomalies", ls)])
    connections = pa.schema([
        ("id", s), ("proto", s), ("client_ip", s), ("client_port", i32), ("server_ip", s),
        ("server_port", i32), ("state", s), ("history", s), ("app", s),
        ("first_frame", i64), ("last_frame", i64), ("start_ts", f64), ("duration_s", f64),
        ("packets_client", i64), ("packets_server", i64), ("bytes_client", i64),
        ("bytes_server", i64), ("retransmissions", i64), ("missed_bytes", i64),
        ("handshake_rtt_s", f64), ("reused_ports", pa.bool_()), ("record", s)])
    chains = pa.schema([
        ("type", s), ("kind", s), ("client", s), ("server", s), ("key", s),
        ("attempts", i32), ("first_ts", f64), ("last_ts", f64), ("backoff_model", s),
        ("succeeded", pa.bool_()), ("gave_up", pa.bool_()), ("record", s)])
    transactions = pa.schema([
        ("type", s), ("protocol", s), ("conn", s), ("frame", i64), ("ts", f64),
        ("record", s)])
    return {"packets": packets, "connections": connections, "retry_chains": chains,
            "transactions": transactions}


_VALUES = ("ack_rtt", "acks_frame", "bytes_in_flight", "duplicate_ack_num",
           "duplicate_ack_frame", "rto", "rto_frame", "initial_rtt", "bytemap",
           "bytemap_reason")


def _conn(c):
    return None if c is None else str(c)


def _dump(r) -> str:
    from dissect.report.jsonl import dumps
    return dumps(r)


class ParquetOut:
    """Collects packet lines (JSONL, in frame order) and writes the four tables."""

    def __init__(self, outdir: str):
        pa, pq = _pa()
        self.pa, self.pq = pa, pq
        self.dir = outdir
        try:
            os.makedirs(outdir, exist_ok=True)
        except OSError as e:
            raise DissectError(f"cannot create output directory {outdir}: {e}") from None
        self.schemas = schemas()
        self._rows: list = []
        self._writer = pq.ParquetWriter(os.path.join(outdir, "packets.parquet"),
                                        self.schemas["packets"])

    def line(self, s: str) -> None:
        """One JSONL packet line."""
        self._rows.append(json.loads(s))
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        cols: dict = {n: [] for n in self.schemas["packets"].names}
        for r in self._rows:
            a = r.get("analysis") or {}
            cols["frame"].append(r["frame"])
            cols["ts"].append(r["ts"])
            cols["caplen"].append(r["caplen"])
            cols["len"].append(r["len"])
            cols["interface"].append(r["interface"])
            cols["protocols"].append("/".join(l["protocol"] for l in r["layers"][1:]))
            cols["src"].append(r.get("src"))
            cols["dst"].append(r.get("dst"))
            cols["conn"].append(_conn(r.get("conn")))
            cols["flags"].append(r.get("flags") or [])
            for k in _VALUES:
                cols[k].append(a.get(k))
            cols["anomalies"].append(r.get("anomalies") or [])
        self._writer.write_table(self.pa.table(cols, schema=self.schemas["packets"]))
        self._rows = []

    def finish(self, res, chains: list | None = None) -> None:
        self._flush()
        self._writer.close()
        pa, pq = self.pa, self.pq
        rows = []
        for c in res.connections:
            hs = c.get("handshake") or {}
            rows.append({
                "id": _conn(c["id"]), "proto": c.get("proto"),
                "client_ip": c["client"]["ip"], "client_port": c["client"]["port"],
                "server_ip": c["server"]["ip"], "server_port": c["server"]["port"],
                "state": c.get("state"), "history": c.get("history"), "app": c.get("app"),
                "first_frame": c.get("first_frame"), "last_frame": c.get("last_frame"),
                "start_ts": c.get("start_ts"), "duration_s": c.get("duration_s"),
                "packets_client": c["packets"]["client"], "packets_server": c["packets"]["server"],
                "bytes_client": c["bytes"]["client"], "bytes_server": c["bytes"]["server"],
                "retransmissions": c.get("retransmissions"),
                "missed_bytes": c.get("missed_bytes"), "handshake_rtt_s": hs.get("rtt_s"),
                "reused_ports": c.get("reused_ports"), "record": _dump(c)})
        self._write("connections", rows)
        rows = []
        for ch in chains or []:
            att = ch.get("attempts") or []
            ts = [a.get("ts") for a in att if isinstance(a, dict) and a.get("ts") is not None]
            model = ch.get("backoff")
            rows.append({
                "type": ch.get("type"), "kind": _s(ch.get("kind")), "client": _s(ch.get("client")),
                "server": _s(ch.get("server")), "key": _s(ch.get("key")),
                "attempts": len(att) if isinstance(att, list) else None,
                "first_ts": min(ts) if ts else None, "last_ts": max(ts) if ts else None,
                "backoff_model": _s(model.get("model")) if isinstance(model, dict) else None,
                "succeeded": _b(ch.get("succeeded")), "gave_up": _b(ch.get("gave_up")),
                "record": _dump(ch)})
        self._write("retry_chains", rows)
        rows = []
        for r in res.records:
            frame = r.get("frame")
            if frame is None and isinstance(r.get("frames"), list) and r["frames"]:
                frame = r["frames"][0]
            ts = r.get("ts")
            rows.append({"type": _s(r.get("type")), "protocol": _s(r.get("protocol")),
                         "conn": _conn(r.get("conn")),
                         "frame": frame if isinstance(frame, int) else None,
                         "ts": ts if isinstance(ts, (int, float)) else None,
                         "record": _dump(r)})
        self._write("transactions", rows)

    def _write(self, name: str, rows: list) -> None:
        sch = self.schemas[name]
        t = self.pa.Table.from_pylist(rows, schema=sch) if rows else sch.empty_table()
        self.pq.write_table(t, os.path.join(self.dir, f"{name}.parquet"))


def _s(v):
    return None if v is None else str(v)


def _b(v):
    return None if v is None else bool(v)
