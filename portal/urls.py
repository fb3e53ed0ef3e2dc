"""Helpers for addresses: keep redirects on this site."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(target: str | None) -> str | None:
    """Return target only if it is a path on this site (no scheme, no host, no backslash tricks)."""
    if not target or not isinstance(target, str):
        return None
    if any(ch in target for ch in "\\\r\n\t") or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
