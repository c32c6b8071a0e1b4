# Compiled form of ecs.py (Cython's pure-Python mode): timestamp formatting with C numbers.
cimport cython


@cython.locals(sec=long, us=object, prefix=object)
cpdef tuple _split(double ts)
cpdef str iso(double ts)
cpdef str iso_us(double ts)
