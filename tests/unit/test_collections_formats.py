"""ISO 11649 creditor references and the camt reader, without a database."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_oss.core.errors import DecodeError
from billing_oss.server.collections import camt, creditor_reference
from tests.generators.camt_files import Entry, document


def test_the_standard_example_validates() -> None:
    assert creditor_reference.parse("RF18 5390 0754 7034") == "539007547034"
    assert creditor_reference.parse("RF18 5390 0754 7035") is None  # one digit off
    assert creditor_reference.parse("RF185390") is None


@given(st.from_regex(r"[A-Z]{1,4}-[0-9]{6}", fullmatch=True))
def test_every_invoice_number_round_trips(number: str) -> None:
    ref = creditor_reference.for_invoice(number)
    assert creditor_reference.parse(ref) == creditor_reference.body_of_number(number)
    assert creditor_reference.parse(ref.lower()) == creditor_reference.body_of_number(number)
    # a swapped pair of digits is caught by the check digits
    body = ref[4:]
    if body[-1] != body[-2]:
        assert creditor_reference.parse(ref[:-2] + ref[-1] + ref[-2]) is None


def test_entries_and_their_problems_are_read_with_the_field() -> None:
    doc = document([
        Entry(ref="A1", amount="12.50", rf="RF18539007547034", text="thanks"),
        Entry(ref="A2", amount="12,50"),
        Entry(ref=None, amount="3"),
        Entry(ref="A4", amount="5", credit=False, end_to_end="E2E", return_reason="AC04"),
    ])
    kind, txs = camt.read(io.BytesIO(doc))
    got = list(txs)
    assert kind == "camt.053" and [t.entry_no for t in got] == [1, 2, 3, 4]
    assert (got[0].amount_micros, got[0].creditor_refs, got[0].remittance, got[0].key) == (
        12_500_000, ("RF18539007547034",), "thanks", "A1")
    assert got[0].statement_account == "FR7630006000011234567890189"
    assert got[1].problem is not None and got[1].problem.startswith("Amt: not a decimal")
    assert got[2].key is None and "AcctSvcrRef" in str(got[2].problem)
    assert (got[3].credit, got[3].return_reason, got[3].end_to_end_id) == (False, "AC04",
                                                                            "E2E")
    kind, txs = camt.read(io.BytesIO(document([Entry(ref="B", amount="1")], "camt.054")))
    assert kind == "camt.054" and len(list(txs)) == 1


@pytest.mark.parametrize("data, message", [
    (b"", "not XML"),
    (b"hello", "not XML"),
    (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.008.001.02"><CstmrDrctDbtInitn/>'
     b"</Document>", "not a camt.053 or camt.054"),
])
def test_a_file_that_is_not_camt_is_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        _kind, txs = camt.read(io.BytesIO(data))
        list(txs)


def test_an_entry_of_several_transactions_is_read_field_by_field() -> None:
    """What the generated files never hold: several TxDtls (each its own key and amount),
    comments between elements, a booking date-time, an account by Othr/Id, remittance in
    two RmtInf blocks, and a structured block without a reference."""
    doc = (b'<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:'
           b'camt.053.001.08"><BkToCstmrStmt><Stmt><Acct><Id><Othr><Id>ACC1</Id></Othr></Id>'
           b'</Acct><Ntry><!-- booked --><Amt Ccy="chf">12.50</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
           b"<BookgDt><DtTm>2026-02-03T10:00:00</DtTm></BookgDt><NtryRef>N1</NtryRef>"
           b"<NtryDtls><TxDtls><Refs><EndToEndId>A</EndToEndId></Refs><Amt Ccy=\"CHF\">5</Amt>"
           b"<RltdPties><Dbtr><Nm> Ann </Nm></Dbtr></RltdPties><RmtInf><Ustrd>a </Ustrd>"
           b"<Ustrd/><Strd><CdtrRefInf><Ref>RF1</Ref></CdtrRefInf></Strd><Strd><CdtrRefInf>"
           b"<Ref> </Ref></CdtrRefInf></Strd></RmtInf><RmtInf><Ustrd>b</Ustrd></RmtInf>"
           b"</TxDtls><TxDtls><Refs><AcctSvcrRef>B</AcctSvcrRef></Refs><Amt>7</Amt></TxDtls>"
           b"<TxDtls/></NtryDtls></Ntry><Ntry><Amt Ccy=\"EUR\">1</Amt><CdtDbtInd>X</CdtDbtInd>"
           b"</Ntry></Stmt></BkToCstmrStmt></Document>")
    _kind, txs = camt.read(io.BytesIO(doc))
    got = list(txs)
    assert [(t.key, t.entry_no, t.statement_account) for t in got] == [
        ("N1/A", 1, "ACC1"), ("N1/B", 1, "ACC1"), ("N1/3", 1, "ACC1"), (None, 2, "ACC1")]
    first = got[0]
    assert (first.amount_micros, first.currency, str(first.booked_on), first.end_to_end_id,
            first.debtor, first.creditor_refs, first.remittance) == (
        5_000_000, "CHF", "2026-02-03", "A", "Ann", ("RF1",), "a b")
    assert got[1].problem == "TxDtls/Amt/@Ccy: not a currency code: ''"
    assert (got[2].amount_micros, got[2].currency, got[2].problem) == (12_500_000, "CHF", None)
    assert got[3].problem == "CdtDbtInd: expected CRDT or DBIT, got 'X'"
