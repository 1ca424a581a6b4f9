"""The HTTP listener: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``, and the REST API ``/api/v1``."""
