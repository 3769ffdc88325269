"""Clients for the backends ``signalbox verify`` reads: Grafana, Tempo, Loki, Prometheus, Sentry.

Each module answers one question ("is this trace id visible here yet?") against the product's
documented HTTP API, reached either directly or through Grafana (datasource proxy by uid, or
``/api/ds/query`` for the Sentry plugin). Problems are raised as ``BackendError``: ``fatal``
when waiting cannot help (bad URL, rejected token), transient otherwise.
"""

from signalbox.backends._http import BackendError, Endpoint, Lookup

__all__ = ["BackendError", "Endpoint", "Lookup"]
