"""bessgw: a gateway daemon for battery energy storage campuses."""

__version__ = "0.3.0.dev0"
