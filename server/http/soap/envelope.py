"""SOAP 1.1 envelopes: reading a request (lxml, hardened), writing a response or a Fault.

A request is refused with a fault naming what is wrong, before any operation runs: bytes that
are not XML, a document type declaration (SOAP 1.1 §3 forbids one; refusing it also shuts out
entity expansion), an envelope of another SOAP version (``VersionMismatch``), a header entry
marked ``mustUnderstand`` that is not ours (``MustUnderstand``), a Body that does not hold
exactly one element. The WS-Security ``UsernameToken`` password, when one is sent, is read as
the API key.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lxml import etree

from billing_oss.core.errors import ErrorCode

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
TNS = "urn:billing-oss:soap:v1"
CONTENT_TYPE = "text/xml"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_comments=True, remove_pis=True)


class Fault(Exception):
    """A SOAP fault: ``faultcode`` is ``Client``, ``Server``, ``VersionMismatch`` or
    ``MustUnderstand``; ``code`` the error code of core/errors.py; ``element`` the element at
    fault, where there is one."""

    def __init__(self, code: ErrorCode, message: str, *, element: str | None = None,
                 faultcode: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.element = element
        self.faultcode = faultcode or ("Server" if code.http_status >= 500 else "Client")


class Request(NamedTuple):
    body: Any  # the one element in soap:Body (an lxml element)
    password: str | None  # wsse:UsernameToken/wsse:Password, if sent


def parse(raw: bytes) -> Request:
    try:
        root = etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError as exc:
        line = f" (line {exc.lineno}, column {exc.offset})" if exc.lineno else ""
        raise Fault(ErrorCode.MALFORMED, f"the request is not well-formed XML: {exc.msg}{line}",
                    element="Envelope") from None
    if root.getroottree().docinfo.doctype or root.getroottree().docinfo.internalDTD is not None:
        raise Fault(ErrorCode.MALFORMED, "a SOAP message must not contain a document type "
                    "declaration", element="Envelope")
    if etree.QName(root).localname != "Envelope":
        raise Fault(ErrorCode.MALFORMED, f"the root element is {_name(root)}, not a SOAP "
                    "Envelope", element=_name(root))
    namespace = etree.QName(root).namespace
    if namespace != SOAP_ENV:
        version = "SOAP 1.2" if namespace == SOAP12_ENV else f"namespace {namespace or '(none)'}"
        raise Fault(ErrorCode.MALFORMED, f"the Envelope is in {version}; this endpoint speaks "
                    f"SOAP 1.1 ({SOAP_ENV})", element="Envelope", faultcode="VersionMismatch")
    header = root.find(f"{{{SOAP_ENV}}}Header")
    password = _password(header) if header is not None else None
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None:
        raise Fault(ErrorCode.MALFORMED, "the Envelope has no soap:Body", element="Body")
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise Fault(ErrorCode.MALFORMED, f"soap:Body holds {len(children)} elements; send "
                    "exactly one operation", element="Body")
    return Request(children[0], password)


def _password(header: Any) -> str | None:
    for entry in header:
        if not isinstance(entry.tag, str):
            continue
        if entry.tag == f"{{{WSSE}}}Security":
            found = entry.find(f"{{{WSSE}}}UsernameToken/{{{WSSE}}}Password")
            return (found.text or "").strip() if found is not None else None
        if entry.get(f"{{{SOAP_ENV}}}mustUnderstand") in ("1", "true"):
            raise Fault(ErrorCode.MALFORMED, f"header {_name(entry)} is marked mustUnderstand "
                        "and this endpoint does not understand it", element=_name(entry),
                        faultcode="MustUnderstand")
    return None


def response(payload: Any) -> bytes:
    """An Envelope whose Body holds ``payload`` (an lxml element)."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "b": TNS})
    etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body").append(payload)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def fault(f: Fault) -> bytes:
    """The SOAP 1.1 Fault of ``f``; its detail is a ``b:BillingFault`` (see billing.xsd)."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "b": TNS})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    node = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(node, "faultcode").text = f"soap:{f.faultcode}"
    etree.SubElement(node, "faultstring").text = f.message
    detail = etree.SubElement(etree.SubElement(node, "detail"), f"{{{TNS}}}BillingFault")
    etree.SubElement(detail, f"{{{TNS}}}code").text = str(f.code)
    etree.SubElement(detail, f"{{{TNS}}}status").text = str(f.code.http_status)
    etree.SubElement(detail, f"{{{TNS}}}message").text = f.message
    if f.element:
        etree.SubElement(detail, f"{{{TNS}}}element").text = f.element
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _name(element: Any) -> str:
    return str(etree.QName(element).localname)
