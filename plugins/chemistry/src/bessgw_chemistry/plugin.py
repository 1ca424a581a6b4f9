"""Entry point of the chemistry plugin (placeholder, filled in by its issue)."""

BESSGW_PLUGIN_API = "1.0"
