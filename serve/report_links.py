"""A campaign report served through a signed link keeps working: its relative links are signed.

`report.html` links its thumbnails, images and records by relative paths. A
relative link drops the report link's query, so with auth on every image would
need a key the browser does not send. When the artifact route serves a report,
each relative ``src``/``href`` gets its own signature, expiring with the link the
report was opened by (or after `auth.link_ttl_s` when it was opened with a key).
"""

from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Callable
from urllib.parse import quote

__all__ = ["is_report", "sign_report_links"]

REPORT_NAME = "report.html"
_LINK = re.compile(r'(?P<attr>\b(?:src|href))="(?P<value>[^"]*)"')


def is_report(key: str) -> bool:
    """Whether `key` is a campaign's contact sheet (``campaigns/<name>/report.html``)."""
    parts = key.split("/")
    return len(parts) == 3 and parts[0] == "campaigns" and parts[2] == REPORT_NAME


def sign_report_links(page: str, report_key: str, query_for: Callable[[str], str]) -> str:
    """`page` with every relative link followed by ``?<query_for(store key)>``.

    Absolute links, fragments and links leaving the store's root are left as they are.
    """
    folder = posixpath.dirname(report_key)

    def signed(match: re.Match[str]) -> str:
        value = html.unescape(match.group("value"))
        if not value or value.startswith(("#", "/")) or ":" in value or "?" in value:
            return match.group(0)
        key = posixpath.normpath(posixpath.join(folder, value))
        if key.startswith(".."):
            return match.group(0)
        link = f"{quote(value, safe='/')}?{query_for(key)}"
        return f'{match.group("attr")}="{html.escape(link)}"'

    return _LINK.sub(signed, page)
