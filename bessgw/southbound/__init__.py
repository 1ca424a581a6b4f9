"""The southbound layer: transports only (Modbus TCP, CAN, OPC UA client) — connection, timeouts, reconnect."""
