"""bessgw.southbound layer (see DESIGN.md)."""
