"""One module per log format, each turning one record into ECS fields (see base.py)."""
