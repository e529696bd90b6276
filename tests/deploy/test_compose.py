"""docker-compose.yml, the Dockerfile, Prometheus, Alertmanager and Grafana files:
valid for their tools where the tools are here, and every file, port, setting
and metric they name exists. No Docker engine runs here, so nothing is started."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.settings import Settings
from tests.support.exported import exported_metrics, metrics_in
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "callkpi-overview.json"
SECRETS = {"POSTGRES_PASSWORD": "pw", "CALLKPI_HASH_KEY": "key"}


def _compose_cli() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if (
            shutil.which(cmd[0])
            and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0
        ):
            return cmd
    return None


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_compose_config_is_valid_and_refuses_to_start_without_the_secrets() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed (Debian: docker-compose)"
        )
    env = {**os.environ, **SECRETS}
    done = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert (
        resolved["api"]["environment"]["CALLKPI_DATABASE_URL"]
        == "postgresql://callkpi:pw@postgres:5432/callkpi"
    )
    bare = {k: v for k, v in os.environ.items() if k not in SECRETS}
    refused = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config"], env=bare, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr


def test_every_file_the_deployment_mounts_or_builds_from_exists() -> None:
    assert (ROOT / "Dockerfile").is_file()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), line
    for name, svc in _services().items():
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), f"{name}: {vol}"
    # the config the containers read is the one mounted from deploy/config
    env = _services()["api"]["environment"]
    assert (ROOT / "deploy/config" / Path(env["CALLKPI_CONFIG"]).name).is_file()


def test_every_callkpi_setting_in_the_compose_file_is_a_real_setting() -> None:
    for name, svc in _services().items():
        for key in svc.get("environment", {}):
            if not key.startswith("CALLKPI_"):
                continue
            path = key.removeprefix("CALLKPI_").lower().split("__")
            if path == ["config"]:
                continue  # the file itself, read by the YAML source
            model: Any = Settings
            for part in path:
                assert part in model.model_fields, f"{name}: {key} is not a setting"
                model = model.model_fields[part].annotation


def test_ports_match_the_commands_and_workers_can_scale() -> None:
    services = _services()
    for name in ("api", "ingest"):
        command = services[name]["command"]
        port = command[command.index("--port") + 1]
        assert services[name]["ports"] == [f"{port}:{port}"]
        assert port in " ".join(services[name]["healthcheck"]["test"])
    worker = services["worker"]
    # a fixed host port or container name would make `--scale worker=N` fail
    assert "ports" not in worker and "container_name" not in worker
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    wport = worker["command"][worker["command"].index("--port") + 1]
    assert jobs["callkpi-worker"]["dns_sd_configs"][0]["port"] == int(wport)
    assert jobs["callkpi-api"]["static_configs"][0]["targets"] == ["api:8000"]


def test_prometheus_config_passes_promtool_where_it_is_installed(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    # the container paths, rewritten to a copy here
    text = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/rules.yml", "rules.yml"))
    shutil.copy(ROOT / "deploy/prometheus/rules.yml", tmp_path / "rules.yml")
    done = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisioning_points_at_the_dashboards_and_the_prometheus_service() -> None:
    prov = ROOT / "deploy/grafana/provisioning"
    source = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    board = yaml.safe_load((prov / "dashboards/callkpi.yml").read_text())["providers"][0]
    mounts = dict(
        v.split(":")[:2][::-1] for v in _services()["grafana"]["volumes"] if v.startswith("./")
    )
    assert mounts[board["options"]["path"]] == "./deploy/grafana/dashboards"
    dash = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}


def test_every_metric_on_the_dashboard_is_exported(stack: Stack) -> None:
    dash = json.loads(DASHBOARD.read_text())
    used = {m for p in dash["panels"] for t in p["targets"] for m in metrics_in(t["expr"])}
    templated = {m for v in dash["templating"]["list"] if isinstance(v.get("query"), dict)
                 for m in metrics_in(v["query"]["query"])}  # fmt: skip
    exported = exported_metrics(stack)
    assert used | templated <= exported, (used | templated) - exported
    # what the issue asks the dashboard to show
    for name in ("callkpi_answer_rate", "callkpi_answer_rate_threshold", "callkpi_service_level",
                 "callkpi_asa_seconds", "callkpi_aht_seconds", "callkpi_calls_in_queue",
                 "callkpi_processing_lag_seconds", "callkpi_events_processed_total"):  # fmt: skip
        assert name in used, name
    assert re.search(r"rate\(callkpi_events_ingested_total", json.dumps(dash))
