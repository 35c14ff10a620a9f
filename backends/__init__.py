"""Storage backends: SQLite (embedded default), in-memory, DynamoDB + S3.

Open one with :func:`backends.registry.open_backend` from a storage URL.
"""
