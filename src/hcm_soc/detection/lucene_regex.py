"""Sigma regular expressions (PCRE-like, unanchored) rewritten as Lucene regular expressions.

Lucene's regex engine matches the whole value and knows no `\\d`, `\\w`, `\\s`, `(?:`, flags or
anchors; `@ # & < > ~ "` are operators there. `lucene_regex` rewrites what has an exact Lucene
equivalent (see docs/detection.md, "Regular expressions") and raises `UnsupportedRegex` for the
rest (word boundaries, look-arounds, back-references, possessive quantifiers, inner anchors).

`union_regexes` turns a list of Sigma wildcard values into a few regexes that match the same
strings: the detection pipeline uses it so that Elasticsearch walks a field's terms once for a
long `contains` list instead of once per value (docs/detection-cost.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sigma.types import SigmaRegularExpression, SigmaRegularExpressionFlag, SigmaString, SpecialChars


class UnsupportedRegex(ValueError):
    """A regular expression uses something Lucene's regex engine cannot express."""


_WS = " \t\n\r\f\v"
_CLASS_SHORT = {"d": "0-9", "w": "a-zA-Z0-9_", "s": _WS}
_LITERAL_ESC = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_QUANT = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")


def _lit(ch: str, ic: bool) -> str:
    if ic:
        ch = ch.lower()
    return ch if ch.isalnum() or ch == "/" or ord(ch) > 127 else "\\" + ch


def _split_alternatives(p: str) -> list[str]:
    alts, depth, i, start, in_class = [], 0, 0, 0, False
    while i < len(p):
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if p[i + 1 : i + 2] == "^":
                i += 1
            if p[i + 1 : i + 2] == "]":
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            alts.append(p[start:i])
            start = i + 1
        i += 1
    alts.append(p[start:])
    return alts


def _class(p: str, i: int, ic: bool) -> tuple[str, int]:
    """Translate the character class starting at p[i] == '['; return it and the index after it."""
    out = ["["]
    i += 1
    if p[i : i + 1] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(p):
        c = p[i]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        was_first, first = first, False
        if c == "\\":
            e = p[i + 1 : i + 2]
            if e in _CLASS_SHORT:
                out.append(_CLASS_SHORT[e])
            elif e in ("D", "W", "S"):
                raise UnsupportedRegex(f"negated class \\{e} inside [...]")
            elif e in _LITERAL_ESC:
                out.append("\\" + _LITERAL_ESC[e])
            elif e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", p[i + 2 : i + 4]):
                out.append("\\" + chr(int(p[i + 2 : i + 4], 16)))
                i += 2
            elif e.isalnum():
                raise UnsupportedRegex(f"escape \\{e} inside [...]")
            else:
                out.append("\\" + e)
            i += 2
            continue
        if c == "[" and p[i + 1 : i + 2] == ":":
            raise UnsupportedRegex("POSIX classes [:name:]")
        if c == "-" and (was_first or p[i + 1 : i + 2] == "]"):
            out.append("\\-")  # a literal '-' at either end of a class; Lucene needs it escaped
        elif c == "-" or c.isalnum() or ord(c) > 127:
            out.append(c.lower() if ic else c)
        else:
            out.append("\\" + c)
        i += 1
    raise UnsupportedRegex("unterminated character class")


def _body(p: str, ic: bool, dotall: bool) -> str:
    out: list[str] = []
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            e = p[i + 1 : i + 2]
            if e in _CLASS_SHORT:
                out.append(f"[{_CLASS_SHORT[e]}]")
            elif e in ("D", "W", "S"):
                out.append(f"[^{_CLASS_SHORT[e.lower()]}]")
            elif e in _LITERAL_ESC:
                out.append(_LITERAL_ESC[e])
            elif e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", p[i + 2 : i + 4]):
                out.append(_lit(chr(int(p[i + 2 : i + 4], 16)), ic))
                i += 2
            elif e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", p[i + 2 : i + 6]):
                out.append(_lit(chr(int(p[i + 2 : i + 6], 16)), ic))
                i += 4
            elif e == "" or e.isalnum():
                raise UnsupportedRegex(f"escape \\{e} (word boundaries, anchors, back-references)")
            else:
                out.append(_lit(e, ic))
            i += 2
            continue
        if c == "[":
            cls, i = _class(p, i, ic)
            out.append(cls)
            continue
        if c == "(":
            if p.startswith("(?:", i):
                i += 3
            elif p.startswith("(?P<", i) or (p.startswith("(?<", i) and p[i + 3 : i + 4] not in ("=", "!")):
                end = p.find(">", i)
                if end < 0:
                    raise UnsupportedRegex("unterminated group name")
                i = end + 1
            elif p.startswith("(?", i):
                raise UnsupportedRegex("look-arounds, inline flags or conditionals inside the expression")
            else:
                i += 1
            out.append("(")
            continue
        if c in ")|":
            if out and out[-1] in ("(", "|"):
                out.append("()")  # an empty alternative: Lucene refuses `(a|)`, takes `(a|())`
            out.append(c)
        elif c == ".":
            out.append("." if dotall else "[^\n]")
        elif c in "*+?":
            out.append(c)
            nxt = p[i + 1 : i + 2]
            if nxt == "?":  # lazy: same set of matching strings
                i += 1
            elif nxt == "+":
                raise UnsupportedRegex("possessive quantifiers")
        elif c == "{" and (m := _QUANT.match(p, i)) and (m.group(1) or m.group(3)):
            lo, comma, hi = m.group(1) or "0", m.group(2), m.group(3)
            out.append("{" + lo + (("," + hi) if comma else "") + "}")
            i = m.end()
            if p[i : i + 1] == "?":
                i += 1
            continue
        elif c in "^$":
            raise UnsupportedRegex(f"anchor '{c}' inside the expression (only at its start or end)")
        else:
            out.append(_lit(c, ic))
        i += 1
    return "".join(out)


def lucene_regex(pattern: str, flags: Iterable[SigmaRegularExpressionFlag] = ()) -> str:
    """A Sigma (PCRE-like, unanchored) regex as an equivalent Lucene regex (anchored, no \\d).

    With the `i` flag the result is lower-cased for matching against a `.caseless` field.
    Raises UnsupportedRegex for what Lucene cannot express."""
    fl = set(flags)
    m = re.match(r"\(\?([ims]+)\)", pattern)
    if m:
        letters = {"i": SigmaRegularExpressionFlag.IGNORECASE, "m": SigmaRegularExpressionFlag.MULTILINE}
        letters["s"] = SigmaRegularExpressionFlag.DOTALL
        fl |= {letters[x] for x in m.group(1)}
        pattern = pattern[m.end() :]
    ic = SigmaRegularExpressionFlag.IGNORECASE in fl
    ml = SigmaRegularExpressionFlag.MULTILINE in fl
    dotall = SigmaRegularExpressionFlag.DOTALL in fl
    parts = []
    for alt in _top_alternatives(pattern):
        start = alt.startswith("^")
        if start:
            alt = alt[1:]
        end = alt.endswith("$") and not _escaped_at(alt, len(alt) - 1)
        if end:
            alt = alt[:-1]
        prefix = ("(.*\n)?" if ml else "") if start else ".*"
        suffix = ("(\n.*)?" if ml else "") if end else ".*"
        parts.append(prefix + _body(alt, ic, dotall) + suffix)
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def _top_alternatives(pattern: str) -> list[str]:
    """The alternatives of `pattern`, with groups that wrap a whole alternative opened up:
    `(^a$)|(^b$)` is `^a$|^b$`, whose anchors Lucene can then express."""
    out: list[str] = []
    for alt in _split_alternatives(pattern):
        inner = _unwrap_group(alt)
        out.extend(_top_alternatives(inner) if inner is not None else [alt])
    return out


def _unwrap_group(alt: str) -> str | None:
    """The inside of a group spanning all of `alt` (capturing, `(?:`, named), else None."""
    if not alt.startswith("(") or not alt.endswith(")") or _escaped_at(alt, len(alt) - 1):
        return None
    depth, i, in_class = 0, 0, False
    while i < len(alt):
        c = alt[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0 and i != len(alt) - 1:
                return None
        i += 1
    inner = alt[1:-1]
    if inner.startswith("?:"):
        return inner[2:]
    if m := re.match(r"\?P?<[A-Za-z_]\w*>", inner):
        return inner[m.end() :]
    return None if inner.startswith("?") else inner


def _escaped_at(s: str, i: int) -> bool:
    n = 0
    while i - 1 - n >= 0 and s[i - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


# -- many Sigma values as few Lucene regexes ------------------------------------------------------

#: longest regex text we build, in UTF-16 code units as Java counts them (an emoji is two):
#: Elasticsearch refuses longer than `index.max_regex_length` (1000), escapes included
MAX_UNION_LENGTH = 800


def _java_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _value_parts(value: SigmaString) -> tuple[bool, str, bool] | None:
    """(leading `*`, the Lucene regex of the rest, trailing `*`) of a Sigma string matched whole;
    None when it holds something other than text and wildcards (placeholders)."""
    parts = list(value.s)
    lead = trail = False
    while parts and parts[0] == SpecialChars.WILDCARD_MULTI:  # `**` is `*`
        parts, lead = parts[1:], True
    while parts and parts[-1] == SpecialChars.WILDCARD_MULTI:
        parts, trail = parts[:-1], True
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.extend(_lit(ch, False) for ch in part)
        elif part == SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            return None
    return lead, "".join(out), trail


def inner_star(value: SigmaString) -> bool:
    """Whether `value` has a `*` between other parts (`a*b`): unions of such values determinize
    into automata too large for Elasticsearch (TooComplexToDeterminize), so they stay apart."""
    parts = list(value.s)
    while parts and parts[0] == SpecialChars.WILDCARD_MULTI:
        parts = parts[1:]
    while parts and parts[-1] == SpecialChars.WILDCARD_MULTI:
        parts = parts[:-1]
    return SpecialChars.WILDCARD_MULTI in parts


class UnionRegex(SigmaRegularExpression):
    """A regex `union_regexes` wrote for a list of Sigma wildcard values, with those values (a rule's
    screen takes their trigrams, `hcm_soc.detection.screen`)."""

    def __init__(self, regexp: str, values: Sequence[SigmaString]) -> None:
        super().__init__(regexp)
        self.values = tuple(values)


def union_regexes(values: Iterable[SigmaString], max_length: int = MAX_UNION_LENGTH) -> list[str] | None:
    """The regexes of `union_regex_values` (see there)."""
    groups = union_regex_values(values, max_length)
    return None if groups is None else [regex for regex, _ in groups]


def union_regex_values(
    values: Iterable[SigmaString], max_length: int = MAX_UNION_LENGTH
) -> list[tuple[str, list[SigmaString]]] | None:
    """Lucene regexes that together match exactly the strings matched by any of `values`
    (Sigma strings with `*`/`?` wildcards, matched whole as a keyword field matches them).

    Values with the same leading/trailing `*` share one regex, `.*(v1|v2|…).*` for `contains`,
    so Elasticsearch builds one automaton and walks a field's terms once instead of once per
    value; a group is split where its regex would pass `max_length`. Every character other than
    letters, digits and non-ASCII ones is escaped (`/` is left to the backend, which escapes it
    in the query text). Each regex comes with the values it unites. None when a value has
    something other than text and wildcards, or is too long for a regex by itself."""
    groups: dict[tuple[bool, bool], dict[str, list[SigmaString]]] = {}
    for value in values:
        parsed = _value_parts(value)
        if parsed is None:
            return None
        lead, body, trail = parsed
        groups.setdefault((lead, trail), {}).setdefault(body, []).append(value)
    out: list[tuple[str, list[SigmaString]]] = []
    for (lead, trail), bodies in groups.items():
        head, tail = (".*" if lead else ""), (".*" if trail else "")
        chunk: list[str] = []
        chunk_values: list[SigmaString] = []
        size = len(head + tail) + 2  # the parentheses
        for body, body_values in bodies.items():
            # "/" gets a backslash in the query text: count it
            cost = _java_length(body) + body.count("/") + 1
            if chunk and size + cost > max_length:
                out.append((f"{head}({'|'.join(chunk)}){tail}", chunk_values))
                chunk, chunk_values, size = [], [], len(head + tail) + 2
            if size + cost > max_length:
                return None  # one value alone is too long for a regex: keep the wildcards
            chunk.append(body)
            chunk_values += body_values
            size += cost
        if chunk:
            out.append((f"{head}({'|'.join(chunk)}){tail}", chunk_values))
    return out
