# Compiled form of dns.py (Cython's pure-Python mode): name decoding in C.
cimport cython

cdef int _MAX_POINTERS
cdef long _FLAG_MASK

from hcm_soc.collectors.network.ecs cimport iso
from hcm_soc.collectors.network.packet cimport cut


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


@cython.locals(pos=Py_ssize_t, questions=list, answers=list, ident=long, flags=long, qd=long, an=long,
               ns=long, ar=long, qtype=long, qclass=long, rtype=long, rclass=long, ttl=long, rdlen=Py_ssize_t,
               name=str, q=DnsQuestion, a=DnsAnswer, msg=DnsMessage)
cpdef DnsMessage _parse(bytes buf)
@cython.locals(cache=dict, names=tuple)
cpdef tuple _header_flags(long flags)
@cython.locals(rd=bytes)
cpdef object _rdata(bytes buf, long rtype, Py_ssize_t start, Py_ssize_t length)
cpdef DnsMessage parse_dns(bytes payload)


cdef class _Pending:
    cdef public double ts
    cdef public DnsMessage query
    cdef public tuple key


cdef class DnsPairing:
    cdef public object on_emit
    cdef public double timeout
    cdef public long long malformed
    cdef public dict _pending

    @cython.locals(key=tuple, pending=_Pending, previous=_Pending, query_ts=double)
    cpdef add(self, double ts, str src_ip, long src_port, str dst_ip, long dst_port, str transport,
              DnsMessage message)


@cython.locals(main=DnsMessage, dns=dict, a=DnsAnswer, q=DnsQuestion, questions=tuple)
cpdef dict _event(double ts, tuple key, DnsMessage query, DnsMessage response)
@cython.locals(name=object)
cpdef str _name(dict names, long value)
cpdef dict _endpoint(str ip, object port)
@cython.locals(parts=dict, cache=dict)
cpdef dict _domain_parts(str name)
