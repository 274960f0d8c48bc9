"""The cxpulse endpoint agent: probe -> batcher -> spool -> uplink, in one asyncio process."""
