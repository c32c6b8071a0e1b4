# Compiled form of tlshello.py (Cython's pure-Python mode): the hellos as C structs with
# read-only fields, shared with tls.pxd.
cimport cython


cdef class ClientHello:
    cdef readonly object version
    cdef readonly object ciphers
    cdef readonly object extensions
    cdef readonly object groups
    cdef readonly object point_formats
    cdef readonly object signature_algorithms
    cdef readonly object supported_versions
    cdef readonly object server_name
    cdef readonly object alpn


cdef class ServerHello:
    cdef readonly object legacy_version
    cdef readonly object cipher
    cdef readonly object extensions
    cdef readonly object selected_version
    cdef readonly object alpn
