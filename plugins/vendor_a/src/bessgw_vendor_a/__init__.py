"""bessgw plugin: vendor_a."""
