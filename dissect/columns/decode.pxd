# Cython's augmenting declarations for dissect/columns/decode.py (scripts/build_speedups.py):
# only that its NamedTuples are built by dissect.tuples' inline C make().

cimport dissect.tuples as _tuples
