"""Conformance kit for plugin authors (pytest plugin ``bessgw``, entry point ``pytest11``)."""
