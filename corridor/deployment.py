"""Worker Versioning: which deployment and build a worker belongs to.

A worker started with ``CORRIDOR_DEPLOYMENT_NAME`` and ``CORRIDOR_BUILD_ID`` joins
Temporal's Worker Deployment of that name as version ``<name>.<build id>``. The server
then routes each workflow task to the deployment's *current* version; journeys are
``AUTO_UPGRADE``: a journey sleeping for months wakes up on whatever build is current
then, so every change to the journey's code must replay its older histories (use
``workflow.patched``; see docs/versioning.md). ``python -m deploy.release`` makes a
new build current once it has replayed the committed histories and is polling.

Without these variables the worker is unversioned, as before. The behaviour is the
worker's default (``default_versioning_behavior``), not ``@workflow.defn``'s: the
server refuses a workflow task that names a behaviour from an unversioned worker
("versioning behavior cannot be specified without deployment options being set with
versioned mode"), and the same workflow code runs on both kinds of worker.
"""

from __future__ import annotations

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

__all__ = ["DeploymentSettings", "deployment_config"]


class DeploymentSettings(BaseSettings):
    """The worker's deployment version, from ``CORRIDOR_*`` variables.

    Attributes:
        deployment_name: Temporal Worker Deployment name (e.g. ``corridor``); no dot.
        build_id: This build's id (e.g. a git commit or an image tag).
    """

    model_config = SettingsConfigDict(env_prefix="CORRIDOR_", extra="ignore")

    deployment_name: str | None = None
    build_id: str | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> DeploymentSettings:
        if (self.deployment_name is None) != (self.build_id is None):
            raise ValueError(
                "set both CORRIDOR_DEPLOYMENT_NAME and CORRIDOR_BUILD_ID, or neither "
                f"(got deployment name {self.deployment_name!r}, build id {self.build_id!r})"
            )
        if self.deployment_name is not None and "." in self.deployment_name:
            raise ValueError(
                f"CORRIDOR_DEPLOYMENT_NAME may not contain '.': {self.deployment_name!r}"
            )
        return self

    @property
    def version(self) -> WorkerDeploymentVersion | None:
        """The version, or ``None`` for an unversioned worker."""
        if self.deployment_name is None or self.build_id is None:
            return None
        return WorkerDeploymentVersion(self.deployment_name, self.build_id)


def deployment_config(
    settings: DeploymentSettings | None = None,
) -> WorkerDeploymentConfig | None:
    """The ``Worker(deployment_config=...)`` for this process, or ``None`` (unversioned).

    Args:
        settings: The version to use; read from the environment when ``None``.

    Raises:
        pydantic.ValidationError: Only one of the two variables is set, or the name
            contains a dot.
    """
    version = (settings or DeploymentSettings()).version
    if version is None:
        return None
    return WorkerDeploymentConfig(
        version=version,
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )
