"""Dataset statistics and charts for the registry; Prometheus metrics and Grafana dashboards."""
