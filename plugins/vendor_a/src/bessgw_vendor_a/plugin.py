"""Entry point of the vendor_a plugin (placeholder, filled in by its issue)."""

BESSGW_PLUGIN_API = "1.0"
