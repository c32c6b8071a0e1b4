"""Network metadata from packets (pcap files and live capture): flows, DNS, HTTP and TLS records."""
