"""ACADA ingestion: the landing-area queue daemon, its settings, metrics and submission API."""
