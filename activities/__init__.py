"""Activities: the journey's only I/O (the PostgreSQL event store)."""
