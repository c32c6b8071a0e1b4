"""The `hcm-soc` command line: one module per noun."""
