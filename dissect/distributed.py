"""``dissect analyze --engine dask [--scheduler ADDRESS]``: the split run of
:mod:`dissect.parallel` on a Dask distributed cluster.

Each task analyses one connection shard of the whole capture (all files, taken as one) and
reads the files itself, so the workers must see the same paths (shared storage; paths are
made absolute here). Without an address a LocalCluster of one single-threaded process per
core is started and stopped. The merge is :func:`dissect.parallel.merge`: the results are
those of the local run, connection by connection and record by record.

With packet output (jsonl / parquet) each task returns its packet lines with its result,
so the client holds them all before writing: for big captures prefer the local engine.
"""

from __future__ import annotations

import os

from dissect.errors import DissectError
from dissect.parallel import (ShardResult, _needs_one_pass, analyse_shard, default_jobs,
                              emit_lines, merge)


def _task(paths, shard, nshards, tcp, app, want_lines):
    lines: list | None = [] if want_lines else None
    add = None
    if want_lines:
        def add(frame, conn, p, s, _a=lines.append):
            _a((frame, shard, conn, p, s))
    r = analyse_shard(paths, shard, nshards, tcp, app, add)
    return r, lines


def _client(scheduler: str | None, jobs: int | None):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise DissectError("--engine dask needs dask[distributed] "
                           "(pip install 'dask[distributed]')") from None
    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=jobs or default_jobs(), threads_per_worker=1,
                           processes=True, dashboard_address=None)
    return Client(cluster), cluster


def run(paths, scheduler: str | None = None, jobs: int | None = None, tcp: bool = True,
        app: bool = True, on_line=None, progress=None):
    names = [str(p) for p in paths]
    paths = [os.path.abspath(p) for p in paths]
    client, cluster = _client(scheduler, jobs)
    try:
        n = jobs or max(1, sum(client.nthreads().values()))
        want = on_line is not None
        futs = [client.submit(_task, paths, i, n, tcp, app, want, pure=False)
                for i in range(n)]
        if progress is not None:
            from dask.distributed import as_completed
            done = 0
            for _ in as_completed(futs):
                done += 1
                progress(done / n, 0)
        out = client.gather(futs)
        parts: list[ShardResult] = [r for r, _ in out]
        if want:
            emit_lines((iter(lines) for _, lines in out), n, on_line)
            del out
        if _needs_one_pass(parts):
            parts = [client.submit(_task, paths, 0, 1, tcp, app, False, pure=False).result()[0]]
        return merge(names, parts, app)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
