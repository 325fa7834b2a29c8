#!/bin/sh
# Runs once, when the event store's data directory is created: the worker's role, with
# the password from CORRIDOR_WORKER_PASSWORD. The migrations grant it its rights.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$CORRIDOR_WORKER_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE corridor_worker LOGIN NOINHERIT PASSWORD :'pw';
SQL
