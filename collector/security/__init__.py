"""Who may talk to the collector and how: the registry (tokens, credentials, API keys, audit),
TLS material, and the gRPC authentication of agent streams."""
