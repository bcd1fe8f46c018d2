"""A billing document's two renditions: ``content`` (what both are made from), ``typst_pdf`` (typst,
PDF/A-3b), ``cii`` (the EN 16931 CII XML) and ``facturx`` (the XML embedded in the PDF)."""
