"""bessgw.northbound layer (see DESIGN.md)."""
