"""bessgw plugin: vendor_c."""
