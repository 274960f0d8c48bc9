"""Wire types shared by agent and collector: generated protobuf/gRPC code and the payload codec."""
