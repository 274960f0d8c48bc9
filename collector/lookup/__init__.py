"""Lookup: find an agent by user or host and say what it measured, for people and for machines."""
