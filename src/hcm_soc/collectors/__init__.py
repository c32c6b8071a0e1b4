"""One module per input (syslog, filetail, evtx, http_ingest); they hand RawRecords to a Sink."""
