"""What reaches outside the system: the outbox of domain events (``outbox.emit``), and the
deliveries built on it (webhooks, provisioning commands, exports, the SOAP façade)."""
