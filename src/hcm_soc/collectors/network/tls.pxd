# Compiled form of tls.py (Cython's pure-Python mode): record and handshake framing in C.
cimport cython

# record, handshake and extension types and the buffer cap: C numbers, not Python globals
cdef int _HANDSHAKE, _CCS, _APPDATA, _CLIENT_HELLO, _SERVER_HELLO, _CERTIFICATE
cdef int _EXT_SNI, _EXT_GROUPS, _EXT_POINTS, _EXT_SIGALGS, _EXT_ALPN, _EXT_VERSIONS
cdef Py_ssize_t _MAX_BUFFER

from hcm_soc.collectors.network.ecs cimport protocol_event
from hcm_soc.collectors.network.packet cimport cut
from hcm_soc.collectors.network.tlshello cimport ClientHello, ServerHello


@cython.locals(out=list, pos=Py_ssize_t, size=Py_ssize_t, ctype=int, major=int, length=Py_ssize_t)
cpdef tuple _records(bytes payload)


@cython.locals(out=list, pos=Py_ssize_t, size=Py_ssize_t, mtype=int, length=Py_ssize_t)
cpdef tuple _handshakes(bytes data)


cdef class _Side:
    cdef public bytearray records
    cdef public bytearray handshake
    cdef public bint ccs
    cdef public bint app_data
    cdef public bint broken


cdef class _TlsConn:
    cdef public double ts
    cdef public tuple endpoints
    cdef public _Side client
    cdef public _Side server
    cdef public object hello
    cdef public object server_hello
    cdef public list certs


cdef class TlsTracker:
    cdef public object on_emit
    cdef public long long malformed
    cdef public dict _conns

    @cython.locals(conn=_TlsConn, side=_Side, held=bytearray, data=bytes, records=list, used=Py_ssize_t,
                   bodies=list, messages=list, ctype=int, body=bytes, mtype=int)
    cpdef bint add_segment(self, double ts, object conn_key, bint from_originator, bytes payload,
                           tuple endpoints=*) except? -1
    cpdef close(self, object conn_key)


@cython.locals(side=_Side, tls13=bint)
cdef bint _side_done(_TlsConn conn, bint client) except? -1
@cython.locals(tls=dict, client=dict, server=dict, x509=dict, event=dict, tls13=bint, h=ClientHello,
               sh=ServerHello, version=int, name=str)
cpdef dict _event(_TlsConn conn)
@cython.locals(key=tuple, hit=tuple, cache=dict)
cpdef tuple _client_fingerprint(ClientHello h)
@cython.locals(key=tuple, hit=str, cache=dict)
cpdef str _server_fingerprint(ServerHello h)


@cython.locals(out=list)
cpdef tuple _u16_list(bytes data, Py_ssize_t start, Py_ssize_t end)
@cython.locals(total=Py_ssize_t, pos=Py_ssize_t, end=Py_ssize_t, out=list, etype=int, elen=Py_ssize_t)
cpdef list _extensions(bytes body, Py_ssize_t pos)
@cython.locals(version=int, pos=Py_ssize_t, clen=Py_ssize_t, exts=list, etype=int, data=bytes, nlen=Py_ssize_t,
               alpn=list, p=Py_ssize_t)
cpdef _decode_client_hello(bytes body)
@cython.locals(version=int, pos=Py_ssize_t, cipher=int, exts=list, etype=int, data=bytes)
cpdef ServerHello _decode_server_hello(bytes body)
