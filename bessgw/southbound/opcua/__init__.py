"""The southbound OPC UA transport: bessgw as a secure OPC UA client of devices that are OPC UA servers."""
