# Compiled form of flowrecord.py (Cython's pure-Python mode): the flow's fields get C types.
cimport cython

from hcm_soc.collectors.network.community_id cimport _dotted_quad
from hcm_soc.collectors.network.ecs cimport fixed6, iso_us
from hcm_soc.collectors.network.packet cimport Packet
from hcm_soc.collectors.network.tcpstream cimport tcp_conn_state


cdef class Flow:
    cdef public tuple key
    cdef public int proto
    cdef public int ip_version
    cdef public str orig_ip
    cdef public str resp_ip
    cdef public long orig_port
    cdef public long resp_port
    cdef public bint orig_low
    cdef public bint from_orig
    cdef public object vlan
    cdef public double conn_start
    cdef public double first
    cdef public double last
    cdef public double pos
    cdef public long long opkts
    cdef public long long obytes
    cdef public long long rpkts
    cdef public long long rbytes
    cdef public long long opl
    cdef public long long rpl
    cdef public int ostate
    cdef public int rstate
    cdef public str history
    cdef public long hist_mask
    cdef public long long ohw
    cdef public long long rhw
    cdef public object oisn
    cdef public object risn
    cdef public object icmp_type
    cdef public object icmp_code
    cdef public long segment
    cdef public object closed_at
    cdef public object cid
    cdef public object protocol
    cdef public object ext


cdef class InternalRanges:
    cdef public list nets
    cdef public list _v4
    cdef public dict cache

    @cython.locals(value=cython.longlong, hit=bint, net=cython.longlong, mask=cython.longlong)
    cpdef bint _lookup(self, str ip)
    @cython.locals(cache=dict, s=object, d=object)
    cpdef str direction(self, str src, str dst)




@cython.locals(x=double, us=cython.longlong, rest=double)
cpdef object _duration_ns(double first, double last)
@cython.locals(proto=int, opkts=cython.longlong, rpkts=cython.longlong, obytes=cython.longlong,
               rbytes=cython.longlong, first=double, last=double, port_protocols=dict)
cpdef dict flow_record(Flow flow, str reason, bint final, str cid, str direction)
