"""Writes the shipped 32.297 demo file, ``config/demo/msc-2026-03.cdr``, and the demo
partner's TAP file, ``config/demo/CDDEUD1FRAF100001``, from readable values.

``python -m tests.generators.demo_files`` rewrites it; ``tests/integration/test_readme.py``
checks the committed bytes are what this writes, so the file and its source never drift.
Numbers and IMSIs are the demo catalog's accounts (``config/demo-catalog.json``).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

from billing_oss.adapters.formats.tap3_writer import TapHeader, encode_transfer_batch
from tests.generators.threegpp_files import encode_record, write_3gpp_file

PATH = Path(__file__).resolve().parents[2] / "config" / "demo" / "msc-2026-03.cdr"
PARTNER_TAP = PATH.parent / "CDDEUD1FRAF100001"


def _at(text: str) -> tuple[int, int]:
    """A 32.298 TimeStamp written in Paris winter time (+01:00)."""
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone(dt.timedelta(hours=1)))
    return int(moment.timestamp()), 60


def _call(i: int, msisdn: str, imsi: str, called: str, start: str, seconds: int) -> bytes:
    return encode_record("moCallRecord", {
        "recordType": 0, "servedIMSI": imsi, "servedMSISDN": msisdn, "calledNumber": called,
        "recordingEntity": "33609000001", "seizureTime": _at(start), "answerTime": _at(start),
        "callDuration": seconds, "causeForTerm": 0, "callReference": bytes([0x10, i]),
    })


def _session(charging_id: int, msisdn: str, imsi: str, start: str, up: int, down: int) -> bytes:
    values: dict[str, Any] = {
        "recordType": 85, "servedIMSI": imsi, "p-GWAddress": "192.0.2.10",
        "chargingID": charging_id, "recordOpeningTime": _at(start), "duration": 1800,
        "causeForRecClosing": 0, "servedMSISDN": msisdn,
        "listOfTrafficVolumes": [(up, down)],
    }
    return encode_record("pGWRecord", values)


def demo_bytes() -> bytes:
    records = [
        _call(1, "33611111111", "208011234567890", "33145678901", "2026-03-03T09:15:00", 312),
        _call(2, "33611111111", "208011234567890", "33622222222", "2026-03-07T19:40:00", 95),
        _call(3, "33622222222", "208012222222222", "4930123456", "2026-03-10T11:05:00", 640),
        _call(4, "33650000001", "208015000000001", "12125550100", "2026-03-12T16:30:00", 1210),
        _session(5001, "33611111111", "208011234567890", "2026-03-04T08:00:00",
                 120_000_000, 1_680_000_000),
        _session(5002, "33650000001", "208015000000001", "2026-03-18T14:00:00",
                 40_000_000, 310_000_000),
    ]
    out = io.BytesIO()
    write_3gpp_file(out, records, sequence_number=1, ts_number=6)
    return out.getvalue()


def partner_tap_bytes() -> bytes:
    """The demo partner DEUD1's TransferBatch for our subscriber A1 roaming in Germany in March
    2026 (local times, UTC+01:00): a call out, a call in, a data session, and a call whose UTC
    offset code the file never declares — the event a SevereReturn sends back."""
    a1 = ("208011234567890", "33611111111")
    events = [  # kind, IMSI, MSISDN, other party, start, UTC code, seconds, teleservice,
        # bytes in, bytes out, APN, charging id, charge (SDR thousandths), rate, entity
        (9, *a1, "4930123456", "20260316101500", 1, 180, "11", None, None, None, None,
         1500, 1, 1),
        (10, *a1, "4989765432", "20260316173000", 1, 60, "11", None, None, None, None,
         400, 1, 1),
        (14, *a1, None, "20260317090000", 1, None, None, 4_000_000, 1_000_000, "internet",
         77, 2100, 1, 1),
        (9, *a1, "4940111222", "20260318120000", 9, 30, "11", None, None, None, None,
         300, 1, 1),
    ]
    header = TapHeader(sender="DEUD1", recipient="FRAF1", fsn=1, created="20260401080000",
                       cutoff="20260401000000", available="20260401080000",
                       utc_offset="+0100", tap_currency="SDR", decimal_places=3)
    return encode_transfer_batch(header, events)[0]


if __name__ == "__main__":
    PATH.write_bytes(demo_bytes())
    PARTNER_TAP.write_bytes(partner_tap_bytes())
    print(f"wrote {PATH} and {PARTNER_TAP}")
