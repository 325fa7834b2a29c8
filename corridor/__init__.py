"""Corridor: durable, event-sourced follow-up engine for economic trade missions."""
