"""Ingest: the gRPC side of the collector. Auth and validation live here, durability in the store."""
