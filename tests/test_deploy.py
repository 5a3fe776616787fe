"""The deployment as written, checked without a container engine: docker-compose.yml against the
Compose Specification schema and our rules (ports on 127.0.0.1, secrets from .env, health
checks, named volumes, engines built from the project's image), the Dockerfile by hadolint,
Prometheus' scrape targets against the services, and every Grafana panel's query against the
metrics the project's endpoints really export (scraped here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.conftest import free_port
from tests.realdata import TESTDATA

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_is_valid_and_follows_the_deployment_rules() -> None:
    schema_path = TESTDATA / "compose" / "compose_spec.json"
    assert schema_path.exists(), f"{schema_path} is missing: run `make setup` (testdata)"
    doc = _compose()
    jsonschema.validate(doc, json.loads(schema_path.read_text()))
    services = doc["services"]
    assert {"minio", "minio-init", "postgres", "registry", "ray-head", "ray-worker", "spark-master", "spark-worker",
            "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            assert src.startswith("./") or src in doc["volumes"], f"{name}: volume {src} is not declared"
        if name in ("registry", "job-worker", "mmlake", "ray-head", "ray-worker", "spark-master", "spark-worker"):
            assert svc["build"]["dockerfile"] == "Dockerfile", f"{name} must run the project's image"
    for name in ("minio", "postgres", "registry", "ray-head", "spark-master", "prometheus"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    text = (REPO / "docker-compose.yml").read_text()
    secrets = re.findall(r"^\s*[A-Z_]*(?:PASSWORD|SECRET_ACCESS_KEY):\s+(?!\$\{)(\S+)", text, re.M)
    assert not secrets, f"secrets committed: {secrets}"
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    needed = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert needed and needed <= set(example), f"{needed - set(example)} missing from .env.example"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    # the bucket is created at start, and the lake addresses it path-style through the endpoint
    assert "mc mb" in " ".join(services["minio-init"]["entrypoint"])
    assert services["registry"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"


def test_the_services_commands_are_ones_the_project_has() -> None:
    """What a compose service runs is a command these tests run natively too."""
    services = _compose()["services"]
    bindir = Path(sys.executable).parent
    for name in ("registry", "ray-head", "ray-worker", "spark-master", "spark-worker"):
        exe = services[name]["command"][0]
        assert (bindir / exe).exists(), f"{name} runs {exe}, which the project's environment does not install"
    serve = subprocess.run([str(bindir / "mmlake"), *services["registry"]["command"][1:3], "--help"],
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode == 0 and "--host" in serve.stdout
    worker = services["job-worker"]["command"]  # the options it passes are ones the command has
    help_ = subprocess.run([str(bindir / "mmlake"), *worker[1:3], "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and all(o in help_.stdout for o in worker[3:] if o.startswith("--"))


def test_dockerfile_passes_hadolint() -> None:
    exe = Path(sys.executable).parent / "hadolint"
    res = subprocess.run([str(exe), "--config", str(REPO / ".hadolint.yaml"), str(REPO / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "default-jre-headless" in text  # Spark workers run from this image
    assert re.search(r"^USER \d+", text, re.M)  # not root


def test_prometheus_scrapes_every_metrics_endpoint_of_the_deployment() -> None:
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    services = _compose()["services"]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert {"registry", "ray", "training"} <= set(jobs)
    for target in jobs["registry"]["static_configs"][0]["targets"]:
        host, port = target.split(":")
        assert host in services and any(str(p).endswith(f":{port}") for p in services[host]["ports"])
    for name in jobs["ray"]["dns_sd_configs"][0]["names"]:
        assert f"--metrics-export-port={jobs['ray']['dns_sd_configs'][0]['port']}" in services[name]["command"]
    mounted = " ".join(services["prometheus"]["volumes"])
    assert "deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in mounted
    for f in (REPO / "deploy/prometheus/targets").glob("*.json"):
        for group in json.loads(f.read_text()):
            assert all(re.fullmatch(r"[\w.-]+:\d+", t) for t in group["targets"])
    grafana = " ".join(services["grafana"]["volumes"])
    assert "deploy/grafana/provisioning:/etc/grafana/provisioning" in grafana
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/mmlake.yml").read_text())
    assert f"dashboards/grafana:{provider['providers'][0]['options']['path']}" in grafana


def _scraped_names(text: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    out = set()
    for fam in text_string_to_metric_families(text):  # families are listed before their first sample
        out |= {s.name for s in fam.samples}
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(fam.type, ("",))
        out |= {fam.name + x for x in suffixes}
    return out


def test_every_dashboard_query_names_a_metric_the_project_exports(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from registry.api import create_app
    from registry.service import Registry
    from training.metrics import TrainMetrics

    # the registry, with one request served and one pipeline run recorded
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    run = reg.start_run("pipeline", "clean", inputs=[], spec={}, parameters={})
    reg.finish_run(run.id, "succeeded", counts={"samples_in": 10, "kept": 7, "filtered": {"too_small": 2},
                                                "rejected": {"truncated_image": 1}, "duplicates": 0,
                                                "stages": {"image_filter": {"in": 9, "out": 7, "seconds": 0.5,
                                                                            "removed": {"filtered:too_small": 2}}}})
    client = TestClient(create_app(reg, with_web=False))
    client.get("/api/v1/datasets")
    client.get("/api/v1/datasets/nope")
    page = client.get("/metrics")
    assert page.status_code == 200
    exported = _scraped_names(page.text)
    assert 'mmlake_pipeline_outcomes_total{outcome="filtered",pipeline="clean",reason="too_small"} 2.0' in page.text
    assert 'route="/api/v1/datasets/{name}",status="404"' in page.text
    reg.close()
    # a training rank with its loader's gauges, over HTTP as Prometheus scrapes it
    loader = types.SimpleNamespace(cfg=types.SimpleNamespace(rank=0), metrics=lambda: {
        "samples_per_s": 10.0, "tokens_per_s": 900.0, "fill": 0.97, "cache_hit_rate": 0.5,
        "store_requests_per_s": 3.0, "samples": 100, "skipped": {"corrupt": 1}, "mixture": {"a": 0.7, "b": 0.3}})
    port = free_port()
    tm = TrainMetrics(port, 0, loader)
    tm.update({"loss": 2.5, "loss_by_source": {"a": 2.4}, "tokens_per_s": 1000.0, "step_s": 0.2,
               "data_wait_share": 0.01, "lr": {"adamw": 1e-3}, "expert_load": [], "tokens": 4096})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        exported |= _scraped_names(r.read().decode())
    if isinstance(tm.server, tuple):  # (server, thread) in prometheus_client >= 0.20
        tm.server[0].shutdown()
    boards = sorted((REPO / "dashboards/grafana").glob("*.json"))
    assert len(boards) >= 3
    for board in boards:
        doc = json.loads(board.read_text())
        assert doc["uid"] and doc["panels"]
        for panel in doc["panels"]:
            for target in panel["targets"]:
                names = set(re.findall(r"\bmmlake_[a-z_]+", target["expr"]))
                assert names, f"{board.name}: {panel['title']} queries no mmlake metric"
                assert names <= exported, f"{board.name}: {panel['title']} queries {names - exported}"
