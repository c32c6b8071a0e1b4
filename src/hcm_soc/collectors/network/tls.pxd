# Compiled form of tls.py (Cython's pure-Python mode): record and handshake framing in C.
cimport cython


@cython.locals(out=list, pos=Py_ssize_t, size=Py_ssize_t, ctype=int, major=int, length=Py_ssize_t)
cpdef tuple _records(bytes payload)


@cython.locals(out=list, pos=Py_ssize_t, size=Py_ssize_t, mtype=int, length=Py_ssize_t)
cpdef tuple _handshakes(bytes data)
