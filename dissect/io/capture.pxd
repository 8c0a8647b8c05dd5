# Cython's augmenting declarations for dissect/io/capture.py (scripts/build_speedups.py):
# only that its Frames are built by dissect.tuples' inline C make().

cimport dissect.tuples as _tuples
