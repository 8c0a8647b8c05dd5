#!/usr/bin/env python3
"""Compile dissect's per-packet modules with Cython into dissect/_compiled/ (optional).

The modules (dissect.speedups.MODULES) are compiled unchanged; a manifest records the
SHA-256 of each source, and dissect loads a compiled module only while its source is
unchanged. Needs Cython and a C compiler with the Python headers; without them (or if a
module fails to compile) dissect runs as pure Python, with the same results, slower.

    python3 scripts/build_speedups.py [--jobs N] [--only MODULE ...]

``--only`` rebuilds just the named modules and keeps the other modules' builds (while
working on one module).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", nargs="+", metavar="MODULE",
                    help="rebuild only these modules (dotted names), keep the others")
    args = ap.parse_args(argv)
    from dissect import speedups
    modules = speedups.MODULES
    if args.only:
        unknown = sorted(set(args.only) - set(modules))
        if unknown:
            print(f"not in dissect.speedups.MODULES: {', '.join(unknown)}", file=sys.stderr)
            return 2
        modules = tuple(args.only)
    try:
        from Cython.Build import cythonize
        from setuptools import Extension, setup
    except ImportError as e:
        print(f"speedups not built ({e}): dissect runs as pure Python", file=sys.stderr)
        return 1
    out = speedups.COMPILED_DIR
    tmp = Path(tempfile.mkdtemp(prefix="dissect-speedups-"))
    try:
        # a copy of the package tree, so the module names (and nothing in the source
        # tree) come out of the build
        src = tmp / "src"
        hashes = {}
        exts = []
        for m in modules:
            path = speedups.source_path(m)
            rel = Path(*m.split(".")).with_suffix(".py")
            dst = src / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst)
            if speedups.types_path(m).exists():
                shutil.copyfile(speedups.types_path(m), dst.with_suffix(".pxd"))
            for dep in speedups.cimported(m):   # declarations it cimports (inline C)
                to = src / dep.relative_to(speedups.PACKAGE_DIR.parent)
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dep, to)
            for parent in rel.parents:
                if str(parent) != ".":
                    (src / parent / "__init__.py").touch()
            hashes[m] = speedups.module_hash(m)
            exts.append(Extension(m, [str(dst)]))
        cwd = os.getcwd()
        os.chdir(src)
        try:
            mods = cythonize(exts, compiler_directives={"language_level": 3, "binding": True,
                                                  # annotations stay hints, as in Python
                                                  "annotation_typing": False},
                             quiet=True, nthreads=args.jobs)
            setup(name="dissect-speedups", ext_modules=mods, script_name="build_speedups",
                  script_args=["-q", "build_ext", "-b", str(tmp / "lib"), "-t",
                               str(tmp / "build"), "-j", str(args.jobs)])
        finally:
            os.chdir(cwd)
        manifest = {}
        if args.only:
            try:
                manifest = json.loads((out / "manifest.json").read_text())
            except (OSError, ValueError):
                manifest = {}
            for m in modules:
                manifest.pop(m, None)
            out.mkdir(parents=True, exist_ok=True)
        else:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
        for m in modules:
            built = list((tmp / "lib").joinpath(*m.split(".")[:-1]).glob(
                m.split(".")[-1] + ".*.so")) or list((tmp / "lib").joinpath(
                    *m.split(".")[:-1]).glob(m.split(".")[-1] + ".so"))
            if not built:
                print(f"{m}: not compiled", file=sys.stderr)
                continue
            # a new file renamed over the old one: a process that has the old one loaded
            # keeps its mapping (copying over it in place crashes such a process)
            dest = speedups.compiled_path(m)
            part = dest.with_name(dest.name + ".part")
            shutil.copyfile(built[0], part)
            os.replace(part, dest)
            manifest[m] = {"sha256": hashes[m], "python": sys.implementation.cache_tag}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        done = sum(1 for m in modules if m in manifest)
        print(f"compiled {done} of {len(modules)} modules into {out}")
        return 0 if done else 1
    except (SystemExit, Exception) as e:   # setuptools reports a failed compile as
        # SystemExit, Cython as CompileError: either way dissect runs as pure Python
        print(f"speedups not built ({e}): dissect runs as pure Python", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
