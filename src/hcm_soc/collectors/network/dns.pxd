# Compiled form of dns.py (Cython's pure-Python mode): name decoding in C.
cimport cython


@cython.locals(labels=list, end=Py_ssize_t, jumps=int, pos=Py_ssize_t, total=Py_ssize_t, size=Py_ssize_t,
               length=int, stop=Py_ssize_t)
cpdef tuple _read_name(bytes buf, Py_ssize_t offset)


cdef class DnsQuestion:
    cdef readonly str name
    cdef readonly long qtype
    cdef readonly long qclass


cdef class DnsAnswer:
    cdef readonly str name
    cdef readonly long rtype
    cdef readonly long rclass
    cdef readonly long ttl
    cdef readonly object data
    cdef readonly long raw_length


cdef class DnsMessage:
    cdef readonly long id
    cdef readonly bint is_response
    cdef readonly long opcode
    cdef readonly long rcode
    cdef readonly tuple flags
    cdef readonly tuple questions
    cdef readonly tuple answers
    cdef readonly long authority_count
    cdef readonly long additional_count
