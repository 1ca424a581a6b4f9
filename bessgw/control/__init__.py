"""bessgw.control layer (see DESIGN.md)."""
