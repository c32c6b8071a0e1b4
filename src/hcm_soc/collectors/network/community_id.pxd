# Compiled form of community_id.py (Cython's pure-Python mode): the flow table's hash path in C.
cimport cython


@cython.locals(cache=dict, packed=bytes)
cpdef bytes _packed(str ip)
@cython.locals(saddr=bytes, daddr=bytes, digest=bytes)
cpdef str ports_community_id(str src_ip, str dst_ip, int proto, long src_port, long dst_port)
