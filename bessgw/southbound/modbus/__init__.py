"""Modbus TCP southbound transport: shared endpoint connections, coalesced reads, breaker and backoff."""
