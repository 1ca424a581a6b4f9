"""pytest entry point of the conformance kit; imports lazily so it costs nothing when unused."""
