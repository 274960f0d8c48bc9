"""Central configuration: one TOML file at the collector, versioned in the store, pushed to agents."""
