"""The Factur-X XMP marks: added to the packet typst writes for a PDF/A-3b document, once
however often marked, and with the PDF/A extension schema declaring them."""

from __future__ import annotations

import io

import pikepdf
import pytest
import typst
from lxml import etree

from billing_oss.server.billing.render import facturx

NS = {"x": "adobe:ns:meta/", "rdf": facturx.RDF, "fx": facturx.FX,
      "pdfaid": "http://www.aiim.org/pdfa/ns/id/", "pdfaExtension": facturx.PDFA_EXTENSION,
      "pdfaSchema": facturx.PDFA_SCHEMA, "pdfaProperty": facturx.PDFA_PROPERTY}
FIELDS = {"DocumentType": "INVOICE", "DocumentFileName": "factur-x.xml", "Version": "1.0",
          "ConformanceLevel": "EN 16931"}


@pytest.fixture(scope="module")
def typst_pdf() -> bytes:
    source = b"""#set document(title: "Invoice 1", author: "Seller")
#pdf.attach("factur-x.xml", bytes("<x/>"), relationship: "alternative",
  mime-type: "text/xml", description: "Factur-X")
Invoice 1"""
    pdf: bytes = typst.Compiler().compile(source, pdf_standards="a-3b", pdf_tags=False)
    return pdf


def metadata(pdf: bytes) -> bytes:
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        return bytes(doc.Root.Metadata.read_bytes())


def fx_fields(root: etree._Element) -> list[tuple[str, str]]:
    return [(etree.QName(e).localname, e.text) for e in root.iterfind(".//fx:*", NS)]


def fx_schemas(root: etree._Element) -> list[etree._Element]:
    return [li for li in root.iterfind(".//pdfaExtension:schemas/rdf:Bag/rdf:li", NS)
            if li.findtext("pdfaSchema:namespaceURI", namespaces=NS) == facturx.FX]


def test_typst_writes_no_factur_x_marks_itself(typst_pdf: bytes) -> None:
    assert fx_fields(etree.fromstring(metadata(typst_pdf))) == []


def test_marked_pdf_keeps_typst_metadata_and_adds_the_fx_properties(typst_pdf: bytes) -> None:
    before = etree.fromstring(metadata(typst_pdf))
    marked = facturx.mark_pdf(typst_pdf)
    packet = metadata(marked)
    assert packet.startswith(b"<?xpacket begin=") and packet.rstrip().endswith(b"?>")
    after = etree.fromstring(packet)
    assert sorted(fx_fields(after)) == sorted(FIELDS.items())
    # Everything typst wrote is still there: PDF/A id, title, tool, the other schemas.
    for path in (".//pdfaid:part", ".//pdfaid:conformance", ".//{*}title//rdf:li",
                 ".//{*}CreatorTool"):
        value = before.findtext(path, namespaces=NS)
        assert value and after.findtext(path, namespaces=NS) == value, path
    kept = len(before.findall(".//pdfaExtension:schemas/rdf:Bag/rdf:li", NS))
    assert len(after.findall(".//pdfaExtension:schemas/rdf:Bag/rdf:li", NS)) == kept + 1
    [schema] = fx_schemas(after)
    assert schema.findtext("pdfaSchema:prefix", namespaces=NS) == "fx"
    properties = [(p.findtext("pdfaProperty:name", namespaces=NS),
                   p.findtext("pdfaProperty:valueType", namespaces=NS),
                   p.findtext("pdfaProperty:category", namespaces=NS))
                  for p in schema.iterfind("pdfaSchema:property/rdf:Seq/rdf:li", NS)]
    assert sorted(properties) == sorted((name, "Text", "external") for name in FIELDS)
    version = after.findtext(".//{http://ns.adobe.com/pdf/1.3/}PDFVersion")
    assert version and marked.startswith(f"%PDF-{version}\n".encode())
    with pikepdf.open(io.BytesIO(marked)) as doc:
        assert "/Filter" not in doc.Root.Metadata  # PDF/A: metadata is not compressed
        assert doc.trailer.ID[0] == pikepdf.open(io.BytesIO(typst_pdf)).trailer.ID[0]
        assert [str(f.F) for f in doc.Root.AF] == ["factur-x.xml"]


def test_marking_twice_leaves_one_set_of_marks(typst_pdf: bytes) -> None:
    twice = etree.fromstring(facturx.mark_xmp(facturx.mark_xmp(metadata(typst_pdf))))
    assert sorted(fx_fields(twice)) == sorted(FIELDS.items())
    assert len(fx_schemas(twice)) == 1


def test_a_packet_without_extension_schemas_gets_one() -> None:
    packet = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
              b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="' + facturx.RDF.encode()
              + b'"><rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">'
              b'<pdfaid:part>3</pdfaid:part><pdfaid:conformance>B</pdfaid:conformance>'
              b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')
    marked = facturx.mark_xmp(packet)
    assert marked.startswith(b'<?xpacket begin="\xef\xbb\xbf"')
    assert marked.endswith(b'<?xpacket end="w"?>')
    root = etree.fromstring(marked)
    assert sorted(fx_fields(root)) == sorted(FIELDS.items())
    assert len(fx_schemas(root)) == 1
    assert root.findtext(".//pdfaid:part", namespaces=NS) == "3"


def test_a_packet_without_rdf_is_refused() -> None:
    with pytest.raises(ValueError, match="rdf:RDF"):
        facturx.mark_xmp(b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')


def test_typst_packet_is_marked_in_place_as_the_rewrite_would(typst_pdf: bytes) -> None:
    """typst's packet gets the marks spliced into its own bytes; read back, it is the packet
    the parse-and-rewrite path makes, element for element, page count included."""
    packet = metadata(typst_pdf)
    spliced = facturx._spliced(packet, 7)
    assert spliced is not None and spliced.startswith(packet[:packet.index(b"<rdf:Description")])
    assert facturx.mark_xmp(packet, pages=7) == spliced

    def elements(xml: bytes) -> list[tuple[str, dict[str, str], str | None]]:
        return [(str(e.tag), dict(e.attrib), e.text) for e in etree.fromstring(xml).iter()]

    assert elements(spliced) == elements(facturx._rewritten(packet, 7))
    npages = "{http://ns.adobe.com/xap/1.0/t/pg/}NPages"
    assert [e.text for e in etree.fromstring(spliced).iter(npages)] == ["7"]
    assert facturx._spliced(spliced, 7) is None  # marked already: the rewrite keeps one set
