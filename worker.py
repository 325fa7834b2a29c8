"""The Corridor worker: what runs where, on one screen.

One worker process polls one task queue and runs:

- the ``FirmJourney`` workflow (one per firm and programme), deterministic, no I/O;
- the ``store_events`` activity, which appends the journeys' events to the PostgreSQL
  event store (asyncpg) and updates the read models, and ``find_command``, which looks
  up whether an old command id was already applied.

Run it as ``python worker.py`` (or inside ``corridor dev``); it is built in
``corridor/runtime.py``. Temporal is found through its standard environment
configuration (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, API key or TLS), PostgreSQL
through ``CORRIDOR_DSN``; both default to a running ``corridor dev`` stack. SIGINT or
SIGTERM stops it cleanly: running activities finish, journeys wait in Temporal for the
next worker.

``CORRIDOR_DSN`` should name the role ``corridor_worker``, which may append and read
events but never change them. The schema is migrated first with ``CORRIDOR_ADMIN_DSN``
(the schema's owner) when it is set; otherwise the worker migrates with its own DSN only
if the schema is not current (which the worker's role may not do: it then stops and
says so), and else just checks it.
"""

from corridor.runtime import build_worker, main, run_worker, serve

__all__ = ["build_worker", "main", "run_worker", "serve"]

if __name__ == "__main__":
    serve()
