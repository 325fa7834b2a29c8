"""The journey's business rules: pure Python, no I/O, no Temporal, no database."""
