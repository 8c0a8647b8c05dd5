"""JSON Lines records: one object per line, each with ``"type"``. The schema is in the README."""

from __future__ import annotations

import json
import math


def _default(o):
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if hasattr(o, "to_record"):
        return o.to_record()
    if hasattr(o, "_asdict"):
        return o._asdict()
    return str(o)


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def dumps(rec: dict) -> str:
    try:
        return json.dumps(rec, default=_default, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except ValueError:   # NaN/inf somewhere: JSON has no such numbers, write null
        return json.dumps(_sanitize(rec), default=_default, separators=(",", ":"),
                          ensure_ascii=False)


def _sanitize(o):
    if isinstance(o, dict):
        return {k: _sanitize(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_sanitize(v) for v in o]
    return _clean(o)


def packet_record(fr, layers, flags=(), conn=None, values=None, decoded=None) -> dict:
    """A packet. ``layers`` is a list of Layer (full fields) or None (then the fast decode's
    protocol chain is given as layers without fields)."""
    if layers is not None:
        lrecs = [l.to_record() for l in layers]
    else:
        from dissect.osi import layer_of
        lrecs = [{"osi": 1, "layer": "physical", "protocol": "frame"}]
        for p in (decoded.chain if decoded else ()):
            o = layer_of(p.split(".")[0])
            lrecs.append({"osi": int(o), "layer": o.label, "protocol": p})
    rec = {"type": "packet", "frame": fr.number, "ts": fr.ts, "caplen": fr.caplen,
           "len": fr.wirelen, "interface": fr.iface, "layers": lrecs,
           "flags": list(flags), "conn": conn}
    if values:
        rec["analysis"] = values
    if decoded is not None:
        if decoded.src is not None:
            rec["src"] = decoded.src
            rec["dst"] = decoded.dst
        if decoded.anomalies:
            rec["anomalies"] = list(decoded.anomalies)
    elif layers is not None:
        an = [a for l in layers for a in l.anomalies]
        if an:
            rec["anomalies"] = an
    return rec


_chain_json: dict[tuple, str] = {}


def _layers_json(chain: tuple) -> str:
    s = _chain_json.get(chain)
    if s is None:
        from dissect.osi import layer_of
        lrecs = [{"osi": 1, "layer": "physical", "protocol": "frame"}]
        for p in chain:
            o = layer_of(p.split(".")[0])
            lrecs.append({"osi": int(o), "layer": o.label, "protocol": p})
        s = json.dumps(lrecs, separators=(",", ":"))
        if len(_chain_json) < 4096:
            _chain_json[chain] = s
    return s


_fast = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_default).encode


def _conn_json(conn) -> str:
    if conn is None:
        return "null"
    if type(conn) is int:
        return str(conn)
    return json.dumps(conn)


def packet_line(fr, decoded, flags=(), conn=None, values=None) -> str:
    """The analysis-path packet record as one JSON line, without building a dict per packet
    (same content as ``dumps(packet_record(fr, None, ..., decoded=decoded))``).

    Flag names, addresses and connection ids are plain ASCII made by dissect itself (not
    capture bytes), so they are written without the general encoder."""
    parts = ['{"type":"packet","frame":', str(fr.number), ',"ts":', repr(float(fr.ts)),
             ',"caplen":', str(fr.caplen), ',"len":', str(fr.wirelen), ',"interface":',
             str(fr.iface), ',"layers":', _layers_json(decoded.chain), ',"flags":',
             ('["' + '","'.join(flags) + '"]') if flags else "[]", ',"conn":',
             _conn_json(conn)]
    if values:
        try:
            parts += [',"analysis":', _fast(values)]
        except ValueError:
            parts += [',"analysis":', dumps(values)]
    if decoded.src is not None:
        parts += [',"src":"', decoded.src, '","dst":"', decoded.dst, '"']
    if decoded.anomalies:
        parts += [',"anomalies":', json.dumps(list(decoded.anomalies))]
    parts.append("}")
    return "".join(parts)
