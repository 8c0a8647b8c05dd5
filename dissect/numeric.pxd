# The inline C version of dissect/numeric.py for the compiled build (scripts/build_speedups.py),
# for modules whose .pxd has "cimport dissect.numeric as _numeric".
#
# Why it equals the Python: seconds * 1e9 is the same IEEE double product; round() of a
# float rounds half to even, as rint() does in the default rounding mode; rint() of a double
# is an integer the double holds exactly, so n / 1000 in doubles is the correctly rounded
# quotient Python's int / int gives; what is left is exact 64-bit integer arithmetic. Past
# 9e18 ns (or for a NaN) the Python integers are used, as in numeric.py.

from libc.math cimport fabs, rint


cdef inline object snap_ns(double seconds, long long snap):
    cdef double x = seconds * 1e9
    cdef long long n, u, d
    if not fabs(x) < 9.0e18:
        ns = round(<object>x)
        us = round(ns / 1000) * 1000
        return us if abs(ns - us) <= snap else ns
    n = <long long>rint(x)
    u = (<long long>rint(<double>n / 1000.0)) * 1000
    d = n - u
    if d < 0:
        d = -d
    return u if d <= snap else n
