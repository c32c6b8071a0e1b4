# Compiled form of packet.py (Cython's pure-Python mode): C types for the fields.
cimport cython


@cython.locals(size=Py_ssize_t)
cpdef bytes cut(bytes buf, Py_ssize_t start, Py_ssize_t stop)


cdef class Packet:
    cdef public double ts
    cdef public int ip_version
    cdef public str src_ip
    cdef public str dst_ip
    cdef public int proto
    cdef public long src_port
    cdef public long dst_port
    cdef public long tcp_flags
    cdef public long length
    cdef public bytes payload
    cdef public object vlan
    cdef public object icmp_type
    cdef public object icmp_code
    cdef public long seq
    cdef public long ack
    cdef public bint fragmented
