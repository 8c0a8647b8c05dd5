"""Capture-level steps that need every connection and application record at once
(run when the capture is finished): FTP data-connection linking, and later the retry,
timing and cascade analyses. Sans-I/O; each step degrades to nothing if its module is
missing."""

from __future__ import annotations

from dissect.engine import optional as _optional


def postprocess(conns: list[dict], records: list[dict]) -> list[dict]:
    link = _optional("dissect.analysis.app.ftp", "link_ftp_data")
    if link is not None and any(r.get("type") == "ftp-expect" for r in records):
        cinfo = [{"conn": c["id"], "client": (c["client"]["ip"], c["client"]["port"]),
                  "server": (c["server"]["ip"], c["server"]["port"]),
                  "first_frame": c["first_frame"], "last_frame": c["last_frame"],
                  "client_bytes": c["bytes"]["client"], "server_bytes": c["bytes"]["server"]}
                 for c in conns if c.get("proto") == "tcp"]
        extra = link(records, cinfo) or []
        records = records + list(extra)
        data_conns = {r.get("conn"): r for r in extra if r.get("type") == "ftp-data"}
        for c in conns:
            if c["id"] in data_conns and not c.get("app"):
                c["app"] = "ftp-data"
    return records
