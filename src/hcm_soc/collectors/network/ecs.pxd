# Compiled form of ecs.py (Cython's pure-Python mode): timestamp formatting with C numbers.
cimport cython

cdef long long _LOW32, _HALF32
cdef long _last_sec
cdef str _last_prefix



@cython.locals(x=double, us=long, rest=double)
cpdef long _micros(double fraction)
@cython.locals(prefix=str, cache=dict)
cpdef str _prefix(long sec)
@cython.locals(n=Py_ssize_t, i=Py_ssize_t)
cdef str _stamp(str prefix, long us, bint fraction)
@cython.locals(sec=long, us=long, prefix=str)
cpdef str iso(double ts)
@cython.locals(sec=long, us=long)
cpdef str iso_us(double ts)
@cython.locals(sec=cython.longlong, scaled=cython.longlong, n=cython.longlong, us=cython.longlong,
               rest=cython.longlong, i=Py_ssize_t)
cpdef str fixed6(double ts)
cpdef dict protocol_event(double ts, str dataset, str protocol, list categories, tuple endpoints,
                          str transport=*)
