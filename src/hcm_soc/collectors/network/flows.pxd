# Compiled form of flows.py (Cython's pure-Python mode): the flow table's per-packet path in C.
cimport cython

from hcm_soc.collectors.network.community_id cimport ports_community_id
from hcm_soc.collectors.network.flowrecord cimport Flow, InternalRanges, flow_record
from hcm_soc.collectors.network.packet cimport Packet
from hcm_soc.collectors.network.tcpstream cimport next_states

cdef long _A, _D, _T, _M32, _HALF32
# the TCP flags and endpoint states imported from tcpstream, as C numbers here
cdef long ACK, FIN, RST, SYN
cdef int CLOSED, INACTIVE, RESET


cdef _add_letter(Flow flow, long bit)
cdef _letter(Flow flow, long bit, bint from_orig)


cdef class FlowTable:
    cdef public object on_emit
    cdef public object on_end
    cdef public long max_flows
    cdef public double active_timeout
    cdef public double idle_timeout
    cdef public double closed_timeout
    cdef public InternalRanges internal
    cdef public object _flows
    cdef public object _closing
    cdef public double now
    cdef public long emitted
    cdef public long evicted
    cdef public long segments
    cdef public long created

    @cython.locals(ts=double, proto=int, sp=long, dp=long, low=bint, plen=Py_ssize_t, flags=long,
                   end=long, bit=long, flow=Flow, key=tuple, hw=cython.longlong)
    cpdef Flow add(self, Packet p)
    @cython.locals(flipped=bint, proto=int, flags=long, flow=Flow)
    cdef Flow _new(self, tuple key, Packet p, bint low)
    @cython.locals(flags=long, plen=Py_ssize_t, bit=long, seq=long, end=long, ahead=long, hw=cython.longlong,
                   index=long)
    cdef _tcp(self, Flow flow, Packet p, bint from_orig)
    @cython.locals(e=int, peer=int)
    cdef _state(self, Flow flow, long flags, Py_ssize_t plen, bint from_orig)
    @cython.locals(flow=Flow)
    cdef _evict(self)
    cdef _segment(self, Flow flow, double ts)
    cpdef _end(self, Flow flow, str reason, bint final)
    cpdef dict record(self, Flow flow, str reason, bint final)


cpdef str flow_community_id(Flow flow)
