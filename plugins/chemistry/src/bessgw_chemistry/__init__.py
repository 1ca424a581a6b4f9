"""bessgw plugin: chemistry."""
