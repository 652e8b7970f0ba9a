"""HTTP API keys: a file of keys, one a line, checked as ``Authorization: Bearer KEY``.

Blank lines and lines starting with ``#`` are ignored; surrounding spaces are
stripped. Keys are compared in constant time. Without a key file the API is
open (put the shim behind something else, or use ``--allow``).
"""

from __future__ import annotations

import hmac

import attrs


def parse_api_keys(text: str) -> tuple[bytes, ...]:
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            if any(c.isspace() for c in line):
                raise ValueError("an API key may not contain spaces")
            keys.append(line.encode("utf-8"))
    return tuple(keys)


@attrs.frozen
class ApiKeys:
    keys: tuple[bytes, ...] = ()

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def authorizes(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value carries a valid key."""
        if not self.keys:
            return True
        if header is None:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = token.strip().encode("utf-8", "surrogateescape")
        # Compare against every key, so the time taken does not tell which matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given, key)
        return matched
