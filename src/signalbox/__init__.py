"""Signalbox: validate and verify an observability bundle (Grafana, Prometheus, Loki, Tempo)."""

__version__ = "0.1.0"
