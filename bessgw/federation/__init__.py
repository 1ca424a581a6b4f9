"""bessgw.federation: the campus view every gateway holds, without a central server (docs/architecture.md).

- :mod:`~bessgw.federation.service` — :class:`FederationService`, what the daemon runs (one root task);
- :mod:`~bessgw.federation.node` — the gossip node: SWIM membership + scuttlebutt state over UDP;
- :mod:`~bessgw.federation.membership`, :mod:`~bessgw.federation.state`, :mod:`~bessgw.federation.broadcast`
  — the rules, as pure data structures;
- :mod:`~bessgw.federation.wire`, :mod:`~bessgw.federation.crypto`, :mod:`~bessgw.federation.replay` — the
  msgpack format, ChaCha20-Poly1305 key ring and replay guard every datagram goes through;
- :mod:`~bessgw.federation.view` — the campus view's frozen dataclasses and quality rules;
- :mod:`~bessgw.federation.admin` — the local admin socket behind ``bessgw members``.

The stand-alone node that multi-process tests drive lives in ``tests/federation/run_node.py``.
"""
