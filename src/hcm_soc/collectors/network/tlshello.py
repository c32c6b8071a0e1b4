"""The TLS hellos a handshake is summarised by: :class:`ClientHello` and :class:`ServerHello`.

Responsible for the two value classes :mod:`tls` decodes the hellos into, with the JA3 and
JA3S strings and hashes they give, and for telling GREASE values (RFC 8701) apart. Kept
apart from :mod:`tls` (which parses records and handshakes and builds the events) so that
each module stays small; both are compiled, sharing these C types (``tlshello.pxd``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import cython

__all__ = ["ClientHello", "ServerHello", "is_grease"]


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values: 0x0a0a, 0x1a1a … 0xfafa."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


# ClientHello and ServerHello compare and hash by value like the frozen dataclasses they were,
# but are plain classes, C structs with read-only fields when compiled (tlshello.pxd): a frozen
# dataclass's __init__ runs in the interpreter and cost ~10,000 instructions per hello.
def _values(hello: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(hello, name) for name in names)


def _same(hello: Any, other: object, names: tuple[str, ...]) -> Any:
    """Value equality of two hellos of the same class (what the dataclasses they were gave)."""
    if type(other) is not type(hello):
        return NotImplemented
    return _values(hello, names) == _values(other, names)


def _repr(hello: Any, names: tuple[str, ...]) -> str:
    return f"{type(hello).__name__}(" + ", ".join(f"{n}={getattr(hello, n)!r}" for n in names) + ")"


_HELLO_FIELDS = (
    "version", "ciphers", "extensions", "groups", "point_formats", "signature_algorithms",
    "supported_versions", "server_name", "alpn",
)  # fmt: skip


@cython.no_gc  # tuples of numbers and strings only: no cycles
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class ClientHello:
    __slots__ = _HELLO_FIELDS

    def __init__(
        self,
        version: int,  # legacy_version of the hello
        ciphers: tuple[int, ...],
        extensions: tuple[int, ...],  # in wire order, GREASE included
        groups: tuple[int, ...],
        point_formats: tuple[int, ...],
        signature_algorithms: tuple[int, ...],
        supported_versions: tuple[int, ...],
        server_name: str | None,
        alpn: tuple[str, ...],
    ) -> None:
        self.version = version
        self.ciphers = ciphers
        self.extensions = extensions
        self.groups = groups
        self.point_formats = point_formats
        self.signature_algorithms = signature_algorithms
        self.supported_versions = supported_versions
        self.server_name = server_name
        self.alpn = alpn

    def __eq__(self, other: object) -> bool:
        return _same(self, other, _HELLO_FIELDS)

    def __hash__(self) -> int:
        return hash(_values(self, _HELLO_FIELDS))

    def __repr__(self) -> str:
        return _repr(self, _HELLO_FIELDS)

    @property
    def ja3_string(self) -> str:
        def join(values: tuple[int, ...]) -> str:
            return "-".join(str(v) for v in values if not is_grease(v))

        return ",".join(
            [
                str(self.version),
                join(self.ciphers),
                join(self.extensions),
                join(self.groups),
                join(self.point_formats),
            ]
        )

    @property
    def ja3(self) -> str:
        return hashlib.md5(self.ja3_string.encode(), usedforsecurity=False).hexdigest()

    @property
    def max_version(self) -> int:
        versions = [v for v in self.supported_versions if not is_grease(v)]
        return max(versions) if versions else self.version


_SERVER_HELLO_FIELDS = ("legacy_version", "cipher", "extensions", "selected_version", "alpn")


@cython.no_gc
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class ServerHello:
    __slots__ = _SERVER_HELLO_FIELDS

    def __init__(
        self,
        legacy_version: int,
        cipher: int,
        extensions: tuple[int, ...],
        selected_version: int | None,  # from supported_versions (TLS 1.3)
        alpn: str | None,
    ) -> None:
        self.legacy_version = legacy_version
        self.cipher = cipher
        self.extensions = extensions
        self.selected_version = selected_version
        self.alpn = alpn

    def __eq__(self, other: object) -> bool:
        return _same(self, other, _SERVER_HELLO_FIELDS)

    def __hash__(self) -> int:
        return hash(_values(self, _SERVER_HELLO_FIELDS))

    def __repr__(self) -> str:
        return _repr(self, _SERVER_HELLO_FIELDS)

    @property
    def version(self) -> int:
        return self.selected_version or self.legacy_version

    @property
    def ja3s_string(self) -> str:
        return f"{self.legacy_version},{self.cipher},{'-'.join(str(e) for e in self.extensions)}"

    @property
    def ja3s(self) -> str:
        return hashlib.md5(self.ja3s_string.encode(), usedforsecurity=False).hexdigest()
