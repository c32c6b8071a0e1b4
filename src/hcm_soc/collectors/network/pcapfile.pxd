# Compiled form of pcapfile.py (Cython's pure-Python mode): the packet type, for filling
# packets in place in the record loop.
from hcm_soc.collectors.network.packet cimport Packet
