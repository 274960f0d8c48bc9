"""Background loops of the collector (retention, scoring, incidents): each started by the server,
cancelled at shutdown, and never fatal after start-up; the computations they run live elsewhere.
"""
