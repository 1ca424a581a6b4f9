"""bessgw plugin for vendor_b vanadium redox flow battery containers, whose controllers are OPC UA servers."""
