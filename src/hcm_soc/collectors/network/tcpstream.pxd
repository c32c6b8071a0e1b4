# Compiled form of tcpstream.py (Cython's pure-Python mode): the state machine and the in-order
# path of reassembly in C.
cimport cython

cdef long _M32, _HALF
cdef long _FIN, _SYN, _RST, _ACK
cdef int _INACTIVE, _SYN_SENT, _SYN_ACK_SENT, _PARTIAL, _ESTABLISHED, _CLOSED, _RESET


cpdef tuple next_states(int e, int peer, long flags, long plen, bint from_orig, int orig_state)



@cython.locals(o_inactive=bint, r_inactive=bint, h=str)
cpdef str tcp_conn_state(int os_, int rs, str history, long long payload_bytes)


@cython.locals(d=long)
cpdef long _delta(long a, long b)


cdef class TcpStream:
    cdef public long max_buffer
    cdef public object next_seq
    cdef public object _pending
    cdef public long _pending_bytes
    cdef public long retransmitted
    cdef public long out_of_order
    cdef public long gaps
    cdef public long missed_bytes

    cpdef start(self, long isn)
    @cython.locals(out=list)
    cpdef list finish(self)
    @cython.locals(ahead=long, held=bytes, out=list)
    cpdef list segment(self, long seq, long flags, bytes payload)
