# Compiled form of http.py (Cython's pure-Python mode): per-connection state as C structs, the
# segment path and header parsing with typed locals.
cimport cython

cdef Py_ssize_t _MAX_PENDING, _MAX_HEADER

from hcm_soc.collectors.network.ecs cimport protocol_event


cdef class _Message:
    cdef public double ts
    cdef public tuple start
    cdef public dict headers
    cdef public long long body_bytes


cdef class _Direction:
    cdef public bytearray buf
    cdef public _Message current
    cdef public object remaining  # a Content-Length may exceed 64 bits: Python int, as in pure Python
    cdef public bint chunked
    cdef public object chunk_left
    cdef public bint broken


cdef class _Conn:
    cdef public _Direction orig
    cdef public _Direction resp
    cdef public object requests
    cdef public tuple endpoints


cdef class HttpTracker:
    cdef public object on_emit
    cdef public long long non_http
    cdef public dict _conns

    @cython.locals(conn=_Conn, side=_Direction, size=Py_ssize_t)
    cpdef bint add_segment(self, double ts, tuple conn_key, bint from_originator, bytes payload,
                           tuple endpoints=*) except? -1
    cdef _break(self, _Direction side)
    @cython.locals(end=Py_ssize_t, head=bytes, first_end=Py_ssize_t, start=tuple, headers=dict, msg=_Message, length=str,
                   coding=str, status=bytes)
    cdef _drain(self, double ts, _Conn conn, _Direction side, bint is_request)
    cdef _complete(self, _Conn conn, _Message msg, bint is_request)
    cpdef close(self, tuple conn_key)


@cython.locals(n=Py_ssize_t, colon=Py_ssize_t, eol=Py_ssize_t, c=cython.uchar, start=Py_ssize_t,
               end=Py_ssize_t, wanted=tuple, name=bytes, i=Py_ssize_t, headers=dict)
cpdef dict _headers(bytes head, Py_ssize_t pos)
cdef bint _is_space(cython.uchar c) noexcept
cdef bint _is_digit(cython.uchar c) noexcept
@cython.locals(sp=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t)
cpdef tuple _request_line(bytes head, Py_ssize_t n)
@cython.locals(reason=bytes)
cpdef tuple _status_line(bytes head, Py_ssize_t n)
cdef bint _plausible(bytearray buf, bint is_request) except? -1
@cython.locals(msg=_Message, take=cython.longlong, data_part=cython.longlong, eol=Py_ssize_t,
               end=Py_ssize_t, trailer_end=Py_ssize_t)
cdef bint _skip_body(_Direction side) except? -1
@cython.locals(first=_Message, http=dict, event=dict, start=tuple, headers=dict, request=dict, url=dict,
               response=dict, target=str, path=str, query=str)
cpdef dict _event(_Conn conn, _Message req, _Message resp)
