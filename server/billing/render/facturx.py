"""The Factur-X marks a PDF/A-3 invoice carries in its XMP metadata, next to the attached
``factur-x.xml``: the ``fx:`` properties (document type, file name, version, conformance
level) and the PDF/A extension schema that declares them, without which a PDF/A validator
refuses the unknown namespace.

typst (0.15) writes the PDF/A-3b XMP packet but takes no custom XMP, so the packet it wrote
is completed here and the metadata stream replaced in an incremental update
(server.billing.render.pdf_update): typst's bytes stay as written, the new stream and the
trailer (same ID, same info) follow them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Final

from lxml import etree

from billing_oss.server.billing.render.pdf_update import Update, stream

FX: Final = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
RDF: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PDFA_EXTENSION: Final = "http://www.aiim.org/pdfa/ns/extension/"
PDFA_SCHEMA: Final = "http://www.aiim.org/pdfa/ns/schema#"
PDFA_PROPERTY: Final = "http://www.aiim.org/pdfa/ns/property#"
XMP_PAGED: Final = "http://ns.adobe.com/xap/1.0/t/pg/"  # xmpTPg: NPages

FILE_NAME: Final = "factur-x.xml"
VERSION: Final = "1.0"
CONFORMANCE: Final = "EN 16931"
# Factur-X names credit notes INVOICE too: the CII TypeCode (381) tells them apart.
DOCUMENT_TYPE: Final = "INVOICE"

# (property, description) as the Factur-X specification's extension schema declares them.
PROPERTIES: Final = (
    ("DocumentFileName", "The name of the embedded XML document"),
    ("DocumentType", "The type of the hybrid document in capital letters, e.g. INVOICE or ORDER"),
    ("Version", "The actual version of the standard applying to the embedded XML document"),
    ("ConformanceLevel", "The conformance level of the embedded XML document"),
)


def mark_pdf(pdf: bytes, edit: Callable[[Update], object] | None = None) -> bytes:
    """``pdf`` (a PDF/A-3 with the XML attached) with the Factur-X XMP metadata, and what
    ``edit`` changes in it (pages it adds) in the same update; the XMP's page count is the
    document's after the edit, not the count typst wrote."""
    update = Update(pdf)
    metadata = update.catalog_ref(b"Metadata")
    _, packet = update.stream_data(metadata)
    if edit is not None:
        edit(update)
    # PDF/A: the metadata stream stays unfiltered, plain XML any reader can find.
    update.set(metadata, stream(b"/Type/Metadata/Subtype/XML",
                                mark_xmp(packet, pages=update.page_count())))
    return update.write()


def mark_xmp(packet: bytes, pages: int | None = None) -> bytes:
    """The XMP ``packet`` with the fx: properties in an rdf:Description of their own and
    the fx: schema added to the packet's pdfaExtension:schemas (created if absent);
    ``pages``: the document's page count, set as xmpTPg:NPages."""
    spliced = _spliced(packet, pages)
    return spliced if spliced is not None else _rewritten(packet, pages)


_BAG_END: Final = b"</rdf:Bag></pdfaExtension:schemas>"
_NPAGES: Final = re.compile(rb"<xmpTPg:NPages>\d+</xmpTPg:NPages>")


def _spliced(packet: bytes, pages: int | None) -> bytes | None:
    """A packet as typst writes it (one rdf:RDF, one extension schemas' bag, its page count,
    no fx: marks) with the marks spliced in as text, the rest as typst wrote it; None for any
    other packet. Parsing and writing the packet again was most of the marking's time."""
    declared = (b'xmlns:%s="%s"' % (prefix, uri.encode()) in packet for prefix, uri in (
        (b"rdf", RDF), (b"pdfaExtension", PDFA_EXTENSION), (b"xmpTPg", XMP_PAGED)))
    if (FX.encode() in packet or packet.count(b"</rdf:RDF>") != 1
            or packet.count(_BAG_END) != 1 or not all(declared)):
        return None
    if pages is not None:
        packet, found = _NPAGES.subn(b"<xmpTPg:NPages>%d</xmpTPg:NPages>" % pages, packet)
        if found != 1:
            return None
    description, schema = _marks()
    packet = packet.replace(_BAG_END, schema + _BAG_END)
    return packet.replace(b"</rdf:RDF>", description + b"</rdf:RDF>")


@functools.cache
def _marks() -> tuple[bytes, bytes]:
    """The fx: rdf:Description and the fx: schema's rdf:li as ``_rewritten`` adds them, each
    declaring the namespaces it uses."""
    rdf = etree.fromstring(_rewritten(b'<rdf:RDF xmlns:rdf="%s"/>' % RDF.encode(), None))
    description = rdf.find(_q(RDF, "Description"))
    schema = rdf.find(f"{_q(RDF, 'Description')}/{_q(PDFA_EXTENSION, 'schemas')}/"
                      f"{_q(RDF, 'Bag')}/{_q(RDF, 'li')}")
    assert description is not None and schema is not None
    return etree.tostring(description), etree.tostring(schema)


def _rewritten(packet: bytes, pages: int | None) -> bytes:
    root = etree.fromstring(packet, etree.XMLParser(remove_blank_text=False,
                                                    resolve_entities=False))
    rdf = root if root.tag == _q(RDF, "RDF") else root.find(_q(RDF, "RDF"))
    if rdf is None:
        raise ValueError("XMP packet without rdf:RDF")
    for description in rdf.findall(_q(RDF, "Description")):  # marked twice: one fx: set
        for old in [e for e in description if etree.QName(e).namespace == FX]:
            description.remove(old)
        if len(description) == 0:
            rdf.remove(description)
    values = {"DocumentFileName": FILE_NAME, "DocumentType": DOCUMENT_TYPE,
              "Version": VERSION, "ConformanceLevel": CONFORMANCE}
    fx = etree.SubElement(rdf, _q(RDF, "Description"), {_q(RDF, "about"): ""},
                          nsmap={"fx": FX})
    for name, _ in PROPERTIES:
        etree.SubElement(fx, _q(FX, name)).text = values[name]
    _declare_schema(rdf)
    if pages is not None:
        _set_page_count(rdf, pages)
    out: bytes = etree.tostring(root.getroottree(), encoding="UTF-8")
    return out


def _set_page_count(rdf: etree._Element, pages: int) -> None:
    """xmpTPg:NPages (a schema XMP predefines: PDF/A needs no extension schema for it) where
    the packet has it, else in an rdf:Description of its own."""
    found = rdf.find(f"{_q(RDF, 'Description')}/{_q(XMP_PAGED, 'NPages')}")
    if found is None:
        holder = etree.SubElement(rdf, _q(RDF, "Description"), {_q(RDF, "about"): ""},
                                  nsmap={"xmpTPg": XMP_PAGED})
        found = etree.SubElement(holder, _q(XMP_PAGED, "NPages"))
    found.text = str(pages)


def _declare_schema(rdf: etree._Element) -> None:
    bag = rdf.find(f"{_q(RDF, 'Description')}/{_q(PDFA_EXTENSION, 'schemas')}/{_q(RDF, 'Bag')}")
    if bag is None:
        holder = etree.SubElement(rdf, _q(RDF, "Description"), {_q(RDF, "about"): ""},
                                  nsmap={"pdfaExtension": PDFA_EXTENSION})
        bag = etree.SubElement(etree.SubElement(holder, _q(PDFA_EXTENSION, "schemas")),
                               _q(RDF, "Bag"))
    for li in bag.findall(_q(RDF, "li")):
        if li.findtext(_q(PDFA_SCHEMA, "namespaceURI")) == FX:
            bag.remove(li)
    nsmap = {"pdfaSchema": PDFA_SCHEMA, "pdfaProperty": PDFA_PROPERTY}
    schema = etree.SubElement(bag, _q(RDF, "li"), {_q(RDF, "parseType"): "Resource"},
                              nsmap=nsmap)
    etree.SubElement(schema, _q(PDFA_SCHEMA, "schema")).text = "Factur-X PDFA Extension Schema"
    etree.SubElement(schema, _q(PDFA_SCHEMA, "namespaceURI")).text = FX
    etree.SubElement(schema, _q(PDFA_SCHEMA, "prefix")).text = "fx"
    seq = etree.SubElement(etree.SubElement(schema, _q(PDFA_SCHEMA, "property")), _q(RDF, "Seq"))
    for name, description in PROPERTIES:
        prop = etree.SubElement(seq, _q(RDF, "li"), {_q(RDF, "parseType"): "Resource"})
        etree.SubElement(prop, _q(PDFA_PROPERTY, "name")).text = name
        etree.SubElement(prop, _q(PDFA_PROPERTY, "valueType")).text = "Text"
        etree.SubElement(prop, _q(PDFA_PROPERTY, "category")).text = "external"
        etree.SubElement(prop, _q(PDFA_PROPERTY, "description")).text = description


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"
