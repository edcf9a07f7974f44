"""Shared gRPC clients of one service's API that several other services use (adapters of core ports)."""
