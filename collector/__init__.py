"""The cxpulse collector: ingest -> store -> (score) -> lookup. Imports point one way, top-down."""
