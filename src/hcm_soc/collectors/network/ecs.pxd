# Compiled form of ecs.py (Cython's pure-Python mode): timestamp formatting with C numbers.
cimport cython


@cython.locals(x=double, us=long, rest=double)
cpdef long _micros(double fraction)
@cython.locals(prefix=str)
cpdef str _prefix(long sec)
@cython.locals(sec=long, us=long, prefix=str)
cpdef str iso(double ts)
@cython.locals(sec=long, us=long)
cpdef str iso_us(double ts)
