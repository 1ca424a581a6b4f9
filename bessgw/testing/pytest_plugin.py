"""pytest entry point of the conformance kit (``pytest11``: ``bessgw``).

Imports lazily: being installed must cost other projects' test runs nothing.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def bessgw_registry():
    """The registry of every installed bessgw plugin (a fresh plugin manager per test)."""
    from bessgw.plugin.manager import build_plugin_manager

    return build_plugin_manager().collect()
