"""Compiled copies of the per-packet modules (optional).

``scripts/build_speedups.py`` compiles the modules in :data:`MODULES` with Cython, unchanged
(the same Python source, so the same results), into ``dissect/_compiled/`` with a manifest
of the SHA-256 of each source it compiled. :func:`install` (called when ``dissect`` is
imported) puts a finder first on ``sys.meta_path`` that loads a compiled module instead of
its source **only while the source is byte for byte the one compiled**: an edited module
runs as Python until it is rebuilt, so a stale build can never shadow a change.

``DISSECT_PURE_PYTHON=1`` turns the compiled modules off (the tests compare both paths).
``dissect speedups`` (``status()``) says which modules run compiled.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

# The modules every frame goes through: reading, the fast decoder, TCP analysis, the
# transport glue, reassembly, the summary, the engine loop, the split run's frame sharing,
# and the application dispatcher with the most common parser (HTTP/1.x); then the
# analyses that run once over all records.
MODULES = ("dissect.io.capture", "dissect.columns.decode", "dissect.columns.segment",
           "dissect.columns.scan",
           "dissect.analysis.tcp", "dissect.analysis.transport", "dissect.analysis.turns",
           "dissect.analysis.reassembly",
           "dissect.analysis.flows", "dissect.analysis.summary", "dissect.engine",
           "dissect.parallel", "dissect.analysis.app.dispatch", "dissect.analysis.app.base",
           "dissect.analysis.app.http",
           # every other application parser (each connection is probed by all of them)
           "dissect.analysis.app.websocket", "dissect.analysis.app.http2",
           "dissect.analysis.app.tls", "dissect.analysis.app.ftp", "dissect.analysis.app.smtp",
           "dissect.analysis.app.imap", "dissect.analysis.app.pop3", "dissect.analysis.app.dns",
           "dissect.analysis.app.rtc", "dissect.analysis.app.quic",
           # and what runs once over all records at the end (serial in a split run)
           "dissect.analysis.findings.timing", "dissect.analysis.findings.conversations",
           "dissect.analysis.findings.cleartext", "dissect.analysis.backoff_chains",
           "dissect.analysis.tiers", "dissect.analysis.post", "dissect.report.sections",
           "dissect.columns.compact", "dissect.columns.filearray",
           # the record stores every record goes through, and the pass that reads them
           "dissect.store", "dissect.analysis.observe")

PACKAGE_DIR = Path(__file__).resolve().parent
COMPILED_DIR = PACKAGE_DIR / "_compiled"
MANIFEST = COMPILED_DIR / "manifest.json"
ENV_PURE = "DISSECT_PURE_PYTHON"


def source_path(module: str) -> Path:
    return PACKAGE_DIR.parent.joinpath(*module.split(".")).with_suffix(".py")


def compiled_path(module: str) -> Path:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return COMPILED_DIR / (module + suffix)


def sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def types_path(module: str) -> Path:
    """The module's optional Cython declarations (an augmenting ``.pxd`` beside the source:
    C types for the compiled build only)."""
    return source_path(module).with_suffix(".pxd")


def cimported(module: str) -> list[Path]:
    """The ``.pxd`` files of dissect modules that ``module``'s ``.pxd`` cimports (their
    inline C functions are compiled into ``module``): ``cimport dissect.x as y`` lines."""
    pxd = types_path(module)
    if not pxd.exists():
        return []
    out = []
    for line in pxd.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "cimport" and words[1].startswith("dissect."):
            out.append(PACKAGE_DIR.parent.joinpath(*words[1].split(".")).with_suffix(".pxd"))
    return out


def module_hash(module: str) -> str | None:
    """SHA-256 of what a build of ``module`` is made from: its source, its ``.pxd`` when it
    has one, and the ``.pxd`` files that one cimports."""
    h = hashlib.sha256()
    try:
        h.update(source_path(module).read_bytes())
        pxd = types_path(module)
        if pxd.exists():
            h.update(b"\0pxd\0" + pxd.read_bytes())
        for dep in cimported(module):
            h.update(b"\0cimport\0" + dep.read_bytes())
    except OSError:
        return None
    return h.hexdigest()


def status() -> dict[str, str]:
    """For each module: ``compiled`` (the build matches the source), ``stale`` (the source
    changed since the build), ``not built``, or ``off`` (DISSECT_PURE_PYTHON)."""
    try:
        built = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        built = {}
    tag = sys.implementation.cache_tag
    out = {}
    for m in MODULES:
        b = built.get(m)
        so = compiled_path(m)
        if not b or b.get("python") != tag or not so.exists():
            out[m] = "not built"
        elif b.get("sha256") != module_hash(m):
            out[m] = "stale"
        elif os.environ.get(ENV_PURE):
            out[m] = "off"
        else:
            out[m] = "compiled"
    return out


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, modules: dict[str, Path]):
        self.modules = modules

    def find_spec(self, fullname, path=None, target=None):
        so = self.modules.get(fullname)
        if so is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(so))
        return importlib.util.spec_from_file_location(fullname, str(so), loader=loader)


_installed: _Finder | None = None


def install() -> None:
    """Load compiled modules whose build matches their source (once per process)."""
    global _installed
    if _installed is not None or os.environ.get(ENV_PURE) or not MANIFEST.exists():
        return
    active = {m: compiled_path(m) for m, s in status().items() if s == "compiled"}
    _installed = _Finder(active)
    if active:
        sys.meta_path.insert(0, _installed)


def active() -> list[str]:
    """The modules this process loaded compiled."""
    return sorted(m for m, mod in sys.modules.items()
                  if m in MODULES and getattr(mod, "__file__", "").endswith(
                      tuple(importlib.machinery.EXTENSION_SUFFIXES)))
