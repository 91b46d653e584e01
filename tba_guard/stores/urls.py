"""Store URLs as they may be shown: a password never leaves in a message, a log or `repr`.
Apart from the Redis module, so that showing a URL needs no redis-py."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


def redact_url(url: str) -> str:
    """The URL with any password (`user:pw@`, or `?password=` of `unix://`) replaced by `***`,
    for messages, logs and `repr`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if "password=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Rebuilt by hand: urlunsplit drops the `//` of `unix:///path` (an empty host).
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def url_password(url: str) -> str | None:
    """The password a URL carries, so that it can be scrubbed from error messages."""
    parts = urlsplit(url)
    if parts.password:
        return parts.password
    passwords = [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    return passwords[0] if passwords else None
