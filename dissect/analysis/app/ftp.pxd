# C layout of TextStream for the compiled build (scripts/build_speedups.py; Cython's
# augmenting declarations, see dissect/analysis/tcp.pxd): a line-oriented parser (HTTP,
# SMTP, POP3, IMAP, FTP) asks its stream for every line, so the stream's parts are C
# fields, read without an instance-dictionary lookup. ftp.py stays the reference.

import cython


cdef class TextStream:
    cdef public bytearray buf
    cdef public object marks
    cdef public Py_ssize_t base, max_line
    cdef public bint skipping

    # n stays an object: a Content-Length may not fit 64 bits (take gives what is there)
    @cython.locals(upto=cython.Py_ssize_t, end=cython.Py_ssize_t, buf=bytearray,
                   frames=list)
    cpdef tuple take(self, object n, object keep=*)
    @cython.locals(i=cython.Py_ssize_t)
    cpdef object line(self, bint split_long=*)
