"""Endpoints, one module per area of the contract. Each module exposes ``routes``."""
