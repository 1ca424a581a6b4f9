"""The plugin-API version and the compatibility rule.

A plugin declares the API it targets as a module attribute, ``BESSGW_PLUGIN_API = "1.0"``. It loads when
the major version matches and its minor is not newer than ours (it may use nothing we lack).
"""

from __future__ import annotations

PLUGIN_API_VERSION = "1.0"


def api_compatible(declared: str, provided: str = PLUGIN_API_VERSION) -> bool:
    """Whether a plugin targeting ``declared`` can run against ``provided``."""
    try:
        want_major, want_minor = (int(part) for part in (declared.split(".") + ["0"])[:2])
        have_major, have_minor = (int(part) for part in (provided.split(".") + ["0"])[:2])
    except ValueError:
        return False
    return want_major == have_major and want_minor <= have_minor
