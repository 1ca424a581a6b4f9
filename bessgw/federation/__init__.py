"""bessgw.federation layer (see DESIGN.md)."""
