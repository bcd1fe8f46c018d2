"""The WSDL 1.1 document (document/literal, SOAP 1.1 over HTTP) with billing.xsd embedded, and
the schema, loaded once, that every request body is validated against.

Each operation ``Op`` takes the element ``tns:Op`` and answers ``tns:OpResponse``; every one may
fault with a ``tns:BillingFault`` detail. The service address is the URL the WSDL was fetched
from, so a client given only the WSDL URL calls the same server.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib import resources

import xmlschema
from lxml import etree

from billing_oss.server.http.soap.envelope import TNS

WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD = "http://www.w3.org/2001/XMLSchema"
HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"
SERVICE = "BillingService"


@functools.cache
def schema_text() -> bytes:
    return resources.files(__package__).joinpath("billing.xsd").read_bytes()


@functools.cache
def schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(schema_text().decode())


def document(address: str, operations: Iterable[tuple[str, str]]) -> bytes:
    """The WSDL for ``(name, documentation)`` operations served at ``address``."""
    ops = list(operations)
    nsmap = {"wsdl": WSDL, "soap": WSDL_SOAP, "xs": XSD, "tns": TNS}
    root = etree.Element(_w("definitions"), nsmap=nsmap, name=SERVICE, targetNamespace=TNS)
    types = etree.SubElement(root, _w("types"))
    types.append(etree.fromstring(schema_text()))
    for message, element in _messages(ops):
        part = etree.SubElement(etree.SubElement(root, _w("message"), name=message),
                                _w("part"), name="parameters")
        part.set("element", f"tns:{element}")

    port_type = etree.SubElement(root, _w("portType"), name=f"{SERVICE}PortType")
    for name, doc in ops:
        op = etree.SubElement(port_type, _w("operation"), name=name)
        etree.SubElement(op, _w("documentation")).text = doc
        etree.SubElement(op, _w("input"), message=f"tns:{name}Request")
        etree.SubElement(op, _w("output"), message=f"tns:{name}Response")
        etree.SubElement(op, _w("fault"), name="BillingFault", message="tns:BillingFault")

    binding = etree.SubElement(root, _w("binding"), name=f"{SERVICE}Binding",
                               type=f"tns:{SERVICE}PortType")
    etree.SubElement(binding, _s("binding"), style="document", transport=HTTP_TRANSPORT)
    for name, _ in ops:
        op = etree.SubElement(binding, _w("operation"), name=name)
        etree.SubElement(op, _s("operation"), soapAction=f"{TNS}#{name}", style="document")
        for direction in ("input", "output"):
            etree.SubElement(etree.SubElement(op, _w(direction)), _s("body"), use="literal")
        fault = etree.SubElement(op, _w("fault"), name="BillingFault")
        etree.SubElement(fault, _s("fault"), name="BillingFault", use="literal")

    port = etree.SubElement(etree.SubElement(root, _w("service"), name=SERVICE), _w("port"),
                            name=f"{SERVICE}Port", binding=f"tns:{SERVICE}Binding")
    etree.SubElement(port, _s("address"), location=address)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True))


def _messages(ops: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = [("BillingFault", "BillingFault")]
    for name, _ in ops:
        out += [(f"{name}Request", name), (f"{name}Response", f"{name}Response")]
    return out


def _w(tag: str) -> str:
    return f"{{{WSDL}}}{tag}"


def _s(tag: str) -> str:
    return f"{{{WSDL_SOAP}}}{tag}"
