# Compiled form of community_id.py (Cython's pure-Python mode): the flow table's hash path in C.
cimport cython

cdef unsigned int _M32, _K0, _K1, _K2, _K3, _H0, _H1, _H2, _H3, _H4


@cython.locals(cache=dict, packed=bytes)
cpdef bytes _packed(str ip)
@cython.locals(saddr=cython.longlong, daddr=cython.longlong)
cpdef str ports_community_id(str src_ip, str dst_ip, int proto, long src_port, long dst_port)
@cython.locals(t=int, x=cython.uint, a=cython.uint, b=cython.uint, c=cython.uint, d=cython.uint,
               e=cython.uint, table=bytes, pos=int, i=int,
               acc=cython.ulonglong, bits=int)
cdef str _v4_ports_id(cython.uint saddr, cython.uint daddr, cython.uint proto, cython.uint sport,
                      cython.uint dport)
@cython.locals(value=cython.longlong, octet=cython.longlong, digits=int, dots=int, ch=cython.Py_UCS4)
cpdef long long _dotted_quad(str ip)
