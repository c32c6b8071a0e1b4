"""Network metadata from packets: DNS, HTTP and TLS analyzers over payload bytes (flows to follow)."""
