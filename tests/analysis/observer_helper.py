"""What the observer tests share (dissect.analysis.observe): the containers of a record,
whose reference counts tell whether an observer kept them, and a pass of one observer."""


def containers(x, out: list | None = None) -> list:
    """``x`` and every dict and list inside it, at any depth."""
    out = [] if out is None else out
    out.append(x)
    for v in (x.values() if isinstance(x, dict) else x):
        if isinstance(v, (dict, list)):
            containers(v, out)
    return out


def feed(obs, res, conns, recs) -> None:
    """The pass, in a function of its own: its loop variables die with it."""
    obs.start(res)
    for c in conns:
        obs.conn(c)
    for r in recs:
        obs.record(r)
