"""Metrics through OpenTelemetry to Prometheus, and the redaction of secrets from log lines."""
