"""Operation elements to Python values and back, by billing.xsd (xmlschema).

A request element is validated against its declaration before it is decoded: a missing
element, an unknown one, a value of the wrong type (``12,50`` for an xsd:decimal) or out of
its limits is a fault naming the element's path (``PostPayment/amount``). A response is
encoded through the same schema, so what is sent is what the WSDL promises.
"""

from __future__ import annotations

from typing import Any

import xmlschema
from lxml import etree

from billing_oss.core.errors import ErrorCode
from billing_oss.server.http.soap import wsdl
from billing_oss.server.http.soap.envelope import TNS, Fault
from billing_oss.server.http.soap.operations import OPERATIONS, Operation

_NAMESPACES = {"": TNS}


def operation_of(element: Any) -> Operation:
    """The operation a Body element names; a fault for any other element."""
    name = etree.QName(element)
    found = OPERATIONS.get(name.localname) if name.namespace == TNS else None
    if found is None:
        where = f"{{{name.namespace}}}" if name.namespace else "no namespace"
        raise Fault(ErrorCode.MALFORMED, f"unknown operation {name.localname} in {where}; "
                    f"operations in {TNS}: {', '.join(sorted(OPERATIONS))}",
                    element=name.localname)
    return found


def decode(op: Operation, element: Any) -> dict[str, Any]:
    """The request element's content as a dict keyed by element name (valid, or a fault)."""
    declaration = wsdl.schema().elements[op.name]
    for error in declaration.iter_errors(element, namespaces=_NAMESPACES):
        raise Fault(ErrorCode.VALIDATION, f"{_path(error, op.name)}: {_reason(error)}",
                    element=_path(error, op.name)) from None
    data: Any = declaration.decode(element, namespaces=_NAMESPACES, decimal_type=None,
                                   datetime_types=False, strip_namespaces=True,
                                   keep_empty=True)
    decoded: dict[str, Any] = _nils(dict(data or {}))
    return decoded


def encode(op: Operation, data: dict[str, Any]) -> Any:
    """The response element of ``op`` holding ``data`` (an lxml element); absent values
    (None, an empty list) are left out, as the schema's minOccurs="0" allows."""
    declaration = wsdl.schema().elements[f"{op.name}Response"]
    return declaration.encode(_pruned(data), namespaces=_NAMESPACES,
                              etree_element_class=etree.Element)


def _nils(value: Any) -> Any:
    """xmlschema's ``{"@nil": "true"}`` for an ``xsi:nil`` element as None."""
    if isinstance(value, dict):
        if value.get("@nil") in ("true", "1"):
            return None
        return {k: _nils(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nils(v) for v in value]
    return value


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _path(error: xmlschema.XMLSchemaValidationError, root: str) -> str:
    """The element at fault as ``Op/child/grandchild`` (local names)."""
    parts: list[str] = []
    node: Any = error.elem  # an lxml element: it knows its parent
    while node is not None:
        parts.append(etree.QName(node).localname)
        node = node.getparent()
        if parts[-1] == root:
            break
    path = "/".join(reversed(parts)) or root
    expected = _expected(error)
    return f"{path}/{expected}" if expected else path


def _expected(error: xmlschema.XMLSchemaValidationError) -> str | None:
    """The missing child a 'not complete' error expects, if it names one."""
    wanted = getattr(error, "expected", None)
    if error.reason and "expected" in error.reason and wanted:
        first = wanted[0] if isinstance(wanted, list | tuple) else wanted
        name = getattr(first, "local_name", None)
        return str(name) if name else None
    return None


def _reason(error: xmlschema.XMLSchemaValidationError) -> str:
    return (error.reason or str(error.message)).rstrip(".")
