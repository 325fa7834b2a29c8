"""deploy/, validated offline: what can be checked without pulling an image or a cluster.

- the compose file against the compose specification's JSON schema (vendored by
  check-jsonschema), and what it mounts, builds and publishes;
- the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, strict);
- the image definition: every file it copies exists and is let through its ignore file,
  it runs as a non-root user, the worker is its entry point, the build id its label;
- the Grafana dashboard: every Corridor metric it charts is one the worker exports;
- Temporal Cloud: the example environment gives an API-key and an mTLS connection through
  Temporal's envconfig.

Each validator is also shown to fail on a broken copy, so a pass means something.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from temporalio.envconfig import ClientConfigProfile
from temporalio.service import TLSConfig

from corridor import observability

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "temporal-values.yaml")
KUBERNETES_VERSION = "1.33.0"
WORKER_GRACE_SECONDS = 10  # worker.build_worker's graceful_shutdown_timeout


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.compose-spec", str(path)],
        capture_output=True, text=True, check=False,
    )


# -------------------------------------------------------------------------- compose


def test_compose_file_follows_the_compose_specification() -> None:
    done = _check_jsonschema(DEPLOY / "compose.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["worker"]["deploy"]["replicas"] = "three"
    broken["services"]["worker"]["restart_policy"] = "always"  # not a service key
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    done = _check_jsonschema(tmp_path / "compose.yaml")
    assert done.returncode != 0
    assert "replicas" in done.stdout or "restart_policy" in done.stdout, done.stdout


def test_compose_runs_the_whole_cluster() -> None:
    services = _compose()["services"]
    assert {"temporal", "temporal-db", "temporal-ui", "events-db", "worker", "prometheus",
            "grafana"} <= set(services)
    assert services["temporal"]["image"].startswith("temporalio/")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert worker["environment"]["CORRIDOR_METRICS_ADDRESS"].endswith(":9464")
    assert worker["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    grace = int(worker["stop_grace_period"].removesuffix("s"))
    assert grace > WORKER_GRACE_SECONDS


def test_compose_mounts_and_builds_files_that_exist_and_publishes_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name


def test_prometheus_scrapes_every_worker_on_its_metrics_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "corridor-worker"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"]  # the compose service: one A record per replica
    assert sd["port"] == 9464


# ----------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_kubernetes_manifest_is_valid(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_catches_a_misspelt_field() -> None:
    (worker,) = yaml.safe_load_all((KUBERNETES / "worker.yaml").read_text())
    worker["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_kubernetes_worker_probes_health_and_drains_before_it_is_killed() -> None:
    (worker,) = yaml.safe_load_all((KUBERNETES / "worker.yaml").read_text())
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["terminationGracePeriodSeconds"] > WORKER_GRACE_SECONDS
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert "CORRIDOR_BUILD_ID" in env
    config = yaml.safe_load((KUBERNETES / "configmap.yaml").read_text())["data"]
    assert config["CORRIDOR_METRICS_ADDRESS"].endswith(":9464")
    assert config["CORRIDOR_DEPLOYMENT_NAME"]


def test_temporal_helm_values_use_postgresql_and_enable_worker_deployments() -> None:
    values = yaml.safe_load((KUBERNETES / "temporal-values.yaml").read_text())
    persistence = values["server"]["config"]["persistence"]
    assert persistence["default"]["sql"]["driver"] == "postgres12"
    assert persistence["visibility"]["sql"]["driver"] == "postgres12"
    assert values["server"]["dynamicConfig"]["system.enableDeploymentVersions"][0]["value"]


# --------------------------------------------------------------------------- image


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_copies_only_files_that_exist_and_that_its_ignore_file_lets_through() -> None:
    ignored = (DEPLOY / "Containerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignored if line.startswith("!")]
    copied = 0
    for keyword, arguments in _instructions():
        if keyword != "COPY" or "--from=" in arguments:
            continue
        *sources, _destination = shlex.split(arguments)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert any(
                source.rstrip("/") == a or source.startswith(a + "/") for a in allowed
            ), f"COPY {source}: excluded by Containerfile.dockerignore"
            copied += 1
    assert copied >= 7


def test_image_runs_the_worker_as_a_non_root_user_labelled_with_its_build_id() -> None:
    instructions = _instructions()
    final = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM"):]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (entrypoint,) = [json.loads(a) for k, a in final if k == "ENTRYPOINT"]
    assert entrypoint[-1] == "worker.py" and (ROOT / "worker.py").is_file()
    labels = " ".join(a for k, a in final if k == "LABEL")
    assert re.search(r'io\.temporal\.build-id="\$\{BUILD_ID\}"', labels), labels
    assert any(k == "ARG" and a.startswith("BUILD_ID") for k, a in final)
    env = " ".join(a for k, a in final if k == "ENV")
    assert "CORRIDOR_BUILD_ID=${BUILD_ID}" in env


# ------------------------------------------------------------------------ dashboard


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "corridor.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"\b((?:corridor|temporal|process)_\w+)", e)}


def test_dashboard_charts_only_metrics_the_worker_exports() -> None:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {
        family.name + suffix
        for family in observability.REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    } | {"corridor_commands_total"}  # counted by the workflow, exported by the SDK
    charted = {m for m in _dashboard_metrics() if not m.startswith("temporal_")}
    assert charted, "the dashboard charts no Corridor metric"
    assert charted <= exported, charted - exported


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "corridor.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {source["datasources"][0]["uid"]}


# -------------------------------------------------------------------- Temporal Cloud


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_cloud_example_connects_with_an_api_key_through_envconfig() -> None:
    env = _env_file(DEPLOY / "cloud.env.example")
    config = ClientConfigProfile.load(disable_file=True, override_env_vars=env)
    connect = config.to_client_connect_config()
    assert connect["target_host"] == env["TEMPORAL_ADDRESS"]
    assert connect["namespace"] == env["TEMPORAL_NAMESPACE"]
    assert connect["api_key"] == env["TEMPORAL_API_KEY"]
    assert connect["tls"] is True


def test_cloud_example_connects_with_mtls_through_envconfig(tmp_path: Path) -> None:
    text = (DEPLOY / "cloud.env.example").read_text()
    commented = re.findall(r"^# (TEMPORAL_TLS_CLIENT_(?:CERT|KEY)_PATH)=(\S+)$", text, re.M)
    assert {name for name, _ in commented} == {
        "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"
    }
    env = {k: v for k, v in _env_file(DEPLOY / "cloud.env.example").items()
           if k != "TEMPORAL_API_KEY"}
    for name, _path in commented:
        (tmp_path / name).write_bytes(f"PEM of {name}".encode())
        env[name] = str(tmp_path / name)
    connect = ClientConfigProfile.load(
        disable_file=True, override_env_vars=env
    ).to_client_connect_config()
    tls = connect["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == b"PEM of TEMPORAL_TLS_CLIENT_CERT_PATH"
    assert tls.client_private_key == b"PEM of TEMPORAL_TLS_CLIENT_KEY_PATH"


def test_release_script_explains_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deploy.release", "--help"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--build-id", "--deployment", "--start-command", "--wait-drained"):
        assert option in done.stdout
