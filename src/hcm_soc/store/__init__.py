"""The only package that talks to Elasticsearch: client factory, local node,
templates, bulk writer with spool, and (later) repositories."""
