"""The northbound layer: the OPC UA server SCADA and operators connect to (see docs/architecture.md)."""
