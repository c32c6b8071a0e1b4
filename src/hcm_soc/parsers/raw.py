"""Raw passthrough: the line is the message; nothing else is read from it."""

from __future__ import annotations

from hcm_soc.parsers.base import Event, ParseContext


def parse_raw(raw: str, ctx: ParseContext) -> Event:
    return {"message": raw}
