"""The CII XML's text cleaning: whatever the text, what XML 1.0 cannot carry prints as a
space and nothing else changes (the printable shortcut never lets such a character by)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from billing_oss.server.billing.render import cii


@given(st.text(st.one_of(st.characters(), st.sampled_from("\x00\x0b\t\n\r\ufffe\uffff"))))
def test_text_xml_cannot_carry_prints_as_a_space(text: str) -> None:
    assert cii.xml_text(text) == cii._NOT_XML.sub(" ", text)
