# The inline C version of dissect/buffers.py for the compiled build
# (scripts/build_speedups.py), for modules whose .pxd has "cimport dissect.buffers".
# Within the view, the bytes are copied from it (what slicing the buffer copies); anything
# else goes through slicing, with its rules for negative and out-of-range bounds.

from cpython.bytes cimport PyBytes_FromStringAndSize


cdef inline object span(object buf, const unsigned char[:] view, Py_ssize_t start,
                        Py_ssize_t end):
    if start < 0 or end < start or end > view.shape[0]:
        return buf[start:end]
    if end == start:
        return b""
    return PyBytes_FromStringAndSize(<const char*>&view[start], end - start)
