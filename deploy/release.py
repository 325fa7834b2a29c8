"""Release a new build of the Corridor worker with Temporal Worker Versioning.

    python -m deploy.release --build-id 2026-12-01.2 [--deployment corridor]
        [--start-command "docker compose up -d worker-b"] [--wait-drained 900]

In order, each step stopping the release when it fails (exit code 1):

1. **Replay** every committed history of ``tests/histories`` against this checkout's
   ``FirmJourney``: a change that would break a journey already running stops here.
2. **Start** the new build: runs ``--start-command`` if given (your orchestrator's
   command), then waits until workers of version ``<deployment>.<build id>`` poll the
   task queue (they run with ``CORRIDOR_DEPLOYMENT_NAME`` and ``CORRIDOR_BUILD_ID``).
3. **Make it current**: from now on every workflow task goes to the new build; the
   journeys are ``AUTO_UPGRADE``, so running ones move at their next task.
4. **Watch the old build drain** until Temporal reports it ``drained`` (no open
   workflow needs it any more): then stop its workers. Without ``--wait-drained`` the
   script reports the status once and leaves the watching to you.

Temporal is reached through its environment configuration (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*``), as the workers are.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from temporalio.api.deployment.v1 import WorkerDeploymentVersion as VersionProto
from temporalio.api.enums.v1 import TaskQueueType, VersionDrainageStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client, WorkflowHistory
from temporalio.common import WorkerDeploymentVersion
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "histories"

Progress = Callable[[str], None]


class ReleaseError(RuntimeError):
    """A release step failed; the message says which and why."""


@dataclass
class ReleaseReport:
    """What a release did, step by step."""

    version: str
    replayed: list[str] = field(default_factory=list)
    previous: str | None = None
    pollers_seconds: float = 0.0
    drainage: str | None = None
    drain_seconds: float | None = None


async def replay_histories(
    workflows: Sequence[type], histories: Path = HISTORIES
) -> list[str]:
    """Replay every history of ``histories/manifest.json`` against ``workflows``.

    Returns:
        The files replayed.

    Raises:
        ReleaseError: A history does not replay (the error names the file), or there
            are none.
    """
    manifest: list[dict[str, str]] = json.loads((histories / "manifest.json").read_text())
    if not manifest:
        raise ReleaseError(f"no histories listed in {histories / 'manifest.json'}")
    replayer = Replayer(workflows=list(workflows), data_converter=pydantic_data_converter)
    replayed = []
    for entry in manifest:
        history = WorkflowHistory.from_json(
            entry["workflow_id"], (histories / entry["file"]).read_text()
        )
        try:
            await replayer.replay_workflow(history)
        except Exception as error:
            raise ReleaseError(
                f"replay: {entry['file']} does not replay on this build: {error}"
            ) from error
        replayed.append(entry["file"])
    return replayed


def _describe_version_request(
    client: Client, version: WorkerDeploymentVersion
) -> DescribeWorkerDeploymentVersionRequest:
    return DescribeWorkerDeploymentVersionRequest(
        namespace=client.namespace,
        deployment_version=VersionProto(
            deployment_name=version.deployment_name, build_id=version.build_id
        ),
    )


async def wait_for_pollers(
    client: Client, version: WorkerDeploymentVersion, task_queue: str, within: float
) -> float:
    """Wait until workers of ``version`` poll ``task_queue`` (workflow and activity).

    Returns:
        The seconds waited.

    Raises:
        ReleaseError: Not within ``within`` seconds.
    """
    started = time.monotonic()
    wanted = {TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY}
    seen: set[TaskQueueType.ValueType] = set()
    while time.monotonic() - started < within:
        try:
            described = await client.workflow_service.describe_worker_deployment_version(
                _describe_version_request(client, version)
            )
            seen = {
                info.type
                for info in described.worker_deployment_version_info.task_queue_infos
                if info.name == task_queue
            }
            if wanted <= seen:
                return time.monotonic() - started
        except RPCError:
            pass  # the version does not exist until its first worker polls
        await asyncio.sleep(0.5)
    raise ReleaseError(
        f"start: no worker of {version.to_canonical_string()} polls {task_queue} after "
        f"{within:.0f}s (seen: {sorted(TaskQueueType.Name(t) for t in seen) or 'none'}); "
        "are they running with CORRIDOR_DEPLOYMENT_NAME and CORRIDOR_BUILD_ID?"
    )


async def current_version(client: Client, deployment_name: str) -> str | None:
    """The deployment's current version (``name.build``), or ``None`` (unversioned)."""
    try:
        described = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=client.namespace, deployment_name=deployment_name
            )
        )
    except RPCError:
        return None
    current = described.worker_deployment_info.routing_config.current_deployment_version
    return f"{current.deployment_name}.{current.build_id}" if current.build_id else None


async def set_current(client: Client, version: WorkerDeploymentVersion) -> str | None:
    """Make ``version`` its deployment's current version; the previous one, if any."""
    previous = await current_version(client, version.deployment_name)
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            identity="corridor-release",
        )
    )
    return previous


async def drainage(client: Client, version: WorkerDeploymentVersion) -> str:
    """Temporal's drainage status of ``version``: ``draining``, ``drained`` or ``unspecified``."""
    described = await client.workflow_service.describe_worker_deployment_version(
        _describe_version_request(client, version)
    )
    status = described.worker_deployment_version_info.drainage_info.status
    return VersionDrainageStatus.Name(status).removeprefix("VERSION_DRAINAGE_STATUS_").lower()


async def watch_drain(
    client: Client,
    version: WorkerDeploymentVersion,
    within: float,
    progress: Progress,
    every: float = 1.0,
) -> tuple[str, float]:
    """Report ``version``'s drainage until ``drained`` or ``within`` seconds.

    Returns:
        The last status and the seconds watched.
    """
    started = time.monotonic()
    last = ""
    while True:
        status = await drainage(client, version)
        if status != last:
            progress(f"{version.to_canonical_string()}: {status}")
            last = status
        elapsed = time.monotonic() - started
        if status == "drained" or elapsed >= within:
            return status, elapsed
        await asyncio.sleep(every)


async def release(
    client: Client,
    version: WorkerDeploymentVersion,
    *,
    task_queue: str,
    workflows: Sequence[type],
    histories: Path = HISTORIES,
    start: Callable[[], Any] | None = None,
    pollers_timeout: float = 300.0,
    wait_drained: float = 0.0,
    progress: Progress = print,
) -> ReleaseReport:
    """Replay, start, make current, watch the old build drain (see the module docstring).

    Args:
        client: Client of the namespace the workers run in.
        version: The new build's version.
        task_queue: The workers' task queue.
        workflows: The new build's workflow classes, to replay the histories with.
        histories: Folder of the committed histories and their manifest.
        start: Starts the new build's workers (``None``: they were started already).
        pollers_timeout: Seconds to wait for the new build's workers to poll.
        wait_drained: Seconds to watch the previous build drain (0: report once).
        progress: Receives one line per step.

    Raises:
        ReleaseError: A step failed; nothing after it was done.
    """
    report = ReleaseReport(version=version.to_canonical_string())
    report.replayed = await replay_histories(workflows, histories)
    progress(f"replay: {len(report.replayed)} histories replay on {report.version}")
    if start is not None:
        start()
    report.pollers_seconds = await wait_for_pollers(client, version, task_queue, pollers_timeout)
    progress(f"start: {report.version} polls {task_queue}")
    report.previous = await set_current(client, version)
    progress(f"current: {report.version} (was {report.previous or 'unversioned'})")
    if report.previous is not None and report.previous != report.version:
        old = WorkerDeploymentVersion.from_canonical_string(report.previous)
        report.drainage, report.drain_seconds = await watch_drain(
            client, old, wait_drained, progress
        )
        if report.drainage == "drained":
            progress(f"drain: {report.previous} is drained: stop its workers")
        else:
            progress(
                f"drain: {report.previous} is {report.drainage}: keep its workers until "
                f"`python -m deploy.release --deployment {old.deployment_name} "
                f"--build-id {old.build_id} --status` says drained"
            )
    return report


def main(
    build_id: Annotated[str, typer.Option(help="The new build's id (CORRIDOR_BUILD_ID).")],
    deployment: Annotated[
        str, typer.Option(help="Worker Deployment name (CORRIDOR_DEPLOYMENT_NAME).")
    ] = "corridor",
    task_queue: Annotated[
        str, typer.Option(envvar="CORRIDOR_TASK_QUEUE", help="The workers' task queue.")
    ] = "corridor",
    start_command: Annotated[
        str | None, typer.Option(help="Shell command that starts the new build's workers.")
    ] = None,
    pollers_timeout: Annotated[float, typer.Option(help="Seconds to wait for them.")] = 300.0,
    wait_drained: Annotated[
        float, typer.Option(help="Seconds to watch the previous build drain.")
    ] = 0.0,
    status: Annotated[
        bool, typer.Option("--status", help="Only print this build's drainage status.")
    ] = False,
) -> None:
    """Release a new worker build: replay, start, make current, watch the old drain."""
    from corridor.temporal import connect
    from workflows.journey import FirmJourney

    version = WorkerDeploymentVersion(deployment, build_id)

    def start() -> None:
        assert start_command is not None
        typer.echo(f"start: {start_command}")
        subprocess.run(start_command, shell=True, check=True)

    async def run() -> None:
        client = await connect()
        if status:
            typer.echo(f"{version.to_canonical_string()}: {await drainage(client, version)}")
            return
        await release(
            client,
            version,
            task_queue=task_queue,
            workflows=[FirmJourney],
            start=start if start_command else None,
            pollers_timeout=pollers_timeout,
            wait_drained=wait_drained,
            progress=typer.echo,
        )

    try:
        asyncio.run(run())
    except (ReleaseError, RPCError, subprocess.CalledProcessError) as error:
        typer.echo(f"release stopped: {error}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    typer.run(main)
