"""The SOAP 1.1 façade (document/literal) for CRMs that speak no REST: the WSDL and its XSD
(``wsdl``), envelopes and faults (``envelope``), validation against the XSD (``codec``) and the
operations, each mapped onto the function its REST route calls (``operations``). The route
is ``routes``."""
