"""Signing a campaign report's relative links (pure: no store, no HTTP)."""

from __future__ import annotations

from serve.report_links import is_report, sign_report_links


def _query(key: str) -> str:
    return f"k={key}"


def test_relative_links_are_signed_for_the_store_key_they_point_at():
    page = '<img src="thumbs/a b.jpg"><a href="../../runs/2026/x.json">r</a>'
    signed = sign_report_links(page, "campaigns/spring/report.html", _query)
    assert 'src="thumbs/a%20b.jpg?k=campaigns/spring/thumbs/a b.jpg"' in signed
    assert 'href="../../runs/2026/x.json?k=runs/2026/x.json"' in signed


def test_fragments_absolute_links_and_links_leaving_the_store_are_left_alone():
    page = (
        '<a href="#item-1">a</a><a href="/v1/runs">b</a><a href="https://x.org/">c</a>'
        '<a href="../../../etc/passwd">d</a><a href="thumbs/x.jpg?v=1">e</a>'
    )
    assert sign_report_links(page, "campaigns/spring/report.html", _query) == page


def test_only_a_campaign_s_report_is_a_report():
    assert is_report("campaigns/spring/report.html")
    assert not is_report("campaigns/spring/thumbs/report.html")
    assert not is_report("renders/report.html")
