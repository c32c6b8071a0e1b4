# Compiled form of analyzer.py (Cython's pure-Python mode): the per-packet dispatch in C.
cimport cython

from hcm_soc.collectors.network.ecs cimport fixed6
from hcm_soc.collectors.network.dns cimport DnsPairing, DnsMessage, parse_dns
from hcm_soc.collectors.network.flowrecord cimport Flow
from hcm_soc.collectors.network.flows cimport FlowTable, flow_community_id
from hcm_soc.collectors.network.http cimport HttpTracker
from hcm_soc.collectors.network.packet cimport Packet
from hcm_soc.collectors.network.tcpstream cimport TcpStream
from hcm_soc.collectors.network.tls cimport TlsTracker


cdef class _Conn:
    cdef public str app
    cdef public bint client_is_orig
    cdef public tuple endpoints
    cdef public TcpStream to_server
    cdef public TcpStream to_client
    cdef public long records
    cdef public int done
    cdef public object dns_buf


cdef double _EXPIRE_EVERY


cdef object _classify(Flow flow, bytes payload)
@cython.locals(conn=_Conn)
cdef _Conn _port_conn(long port, bint client_is_orig, Flow flow)


cdef class NetworkAnalyzer:
    cdef public object _emit
    cdef public object decoder
    cdef public FlowTable flows
    cdef public DnsPairing dns
    cdef public HttpTracker http
    cdef public TlsTracker tls
    cdef public long long packets
    cdef public long long bytes
    cdef public object _current
    cdef public double _last_expire
    cdef public dict _tcp_counters

    @cython.locals(flow=Flow, proto=int, ext=object, message=DnsMessage)
    cpdef add(self, Packet p)
    @cython.locals(conn=_Conn, chunks=list, client_isn=object, server_isn=object)
    cdef _tcp(self, Flow flow, Packet p, object ext)
    @cython.locals(more=bint, chunk=bytes, http=HttpTracker, tls=TlsTracker)
    cdef _deliver(self, Flow flow, _Conn conn, double ts, bint from_client, list chunks)
    @cython.locals(conn=_Conn)
    cpdef _flow_end(self, Flow flow, bint final)
    @cython.locals(rest=list, counters=dict)
    cdef _finish_stream(self, Flow flow, _Conn conn, bint from_client, TcpStream stream)
    cpdef _emit_flow(self, dict event)
    @cython.locals(network=dict, src=dict, dst=dict, proto=int, flow=Flow, ext=object, conn=_Conn, dns=dict,
                   question=dict, s_ip=str, d_ip=str)
    cpdef str _decorate(self, str dataset, dict event)
