"""The billing-oss server: configuration, pipeline, store, API and CLI."""
