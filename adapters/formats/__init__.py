"""File and payload formats: 3GPP TS 32.297/32.298, TAP3/RAP, CSV, JSON/MessagePack."""
