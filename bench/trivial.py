"""The baselines' workflow: as little as a workflow can do, on the same worker.

Started like a journey (and left running), it takes updates that only count, and ends
on the ``finish`` signal. Its starts, updates, history and replay are what the
journey's are measured against.
"""

from __future__ import annotations

from temporalio import workflow


@workflow.defn
class Trivial:
    """A workflow that waits, counting the updates it receives."""

    def __init__(self) -> None:
        self._count = 0
        self._done = False

    @workflow.run
    async def run(self, name: str) -> int:
        """Wait for ``finish``; return how many updates were received."""
        await workflow.wait_condition(lambda: self._done)
        return self._count

    @workflow.update
    def touch(self, value: str) -> int:
        """Count one update; return the count."""
        self._count += 1
        return self._count

    @workflow.signal
    def finish(self) -> None:
        """End the workflow."""
        self._done = True
