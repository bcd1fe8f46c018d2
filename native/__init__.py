"""Compiled hot paths (Cython). Imports nothing from the rest of billing-oss."""
