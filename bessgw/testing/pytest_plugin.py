"""pytest entry point of the conformance kit (``pytest11``: ``bessgw``).

Imports lazily: being installed must cost other projects' test runs nothing.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def bessgw_registry():
    """The registry of every installed bessgw plugin and of ``$BESSGW_PLUGINS`` (a fresh one per test)."""
    from bessgw.testing.southbound import installed_plugins

    return installed_plugins()
