"""The records that cross package lines and are stored in Elasticsearch (pydantic v2, extra="forbid").

alert.py   the alert document the detection engine raises (`<prefix>-alerts`)
"""
