"""Settings: where the lake and the registry are, and how to reach S3.

Resolved once, in this order (first wins): command-line flags, environment variables, the
config file (``$MMLAKE_CONFIG``, else ``$MMLAKE_HOME/config.toml``), embedded defaults. The
defaults need nothing running beside the project: a lake on local disk and a SQLite registry
under ``./.mmlake/``.

=====================  =======================  ==========================================
variable               config key               default
=====================  =======================  ==========================================
MMLAKE_HOME            --                       ./.mmlake
MMLAKE_LAKE            lake                     $MMLAKE_HOME/lake (a path, file:// or s3://)
MMLAKE_REGISTRY        registry                 sqlite:///$MMLAKE_HOME/registry.db
MMLAKE_S3_ENDPOINT     s3_endpoint              (AWS) e.g. http://127.0.0.1:9000 for MinIO
MMLAKE_S3_REGION       s3_region                us-east-1
MMLAKE_S3_RATE_LIMIT   s3_rate_limit            none (requests/s per process)
MMLAKE_S3_MAX_RETRIES  s3_max_retries           8
MMLAKE_OPENLINEAGE     openlineage              none (a .jsonl path or an http(s) endpoint)
MMLAKE_REGISTRY_READS  registry_reads           open (or "token": reading needs a token)
MMLAKE_REGISTRY_ROOTS  registry_roots           none (comma-separated paths/URIs a served registry may
                                                read and write besides the lake and $MMLAKE_HOME)
MMLAKE_TOKEN           --                       API token for an http(s) registry
MMLAKE_QA_BASE_URL     qa_base_url              none (an OpenAI-compatible server, e.g. http://host:8000/v1)
MMLAKE_QA_MODEL        qa_model                 none (the model name that server serves)
MMLAKE_QA_RPS          qa_rps                   none (requests/s to it, per node)
MMLAKE_QA_API_KEY      --                       its API key, where it needs one (never in a spec)
=====================  =======================  ==========================================
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["Settings", "load_settings"]

_KEYS = {"lake": str, "registry": str, "s3_endpoint": str, "s3_region": str, "s3_rate_limit": float,
         "s3_max_retries": int, "openlineage": str, "registry_reads": str, "registry_roots": str, "qa_base_url": str, "qa_model": str,
         "qa_rps": float}


@dataclass(frozen=True)
class Settings:
    home: str
    lake: str
    registry: str
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_rate_limit: float | None = None
    s3_max_retries: int | None = None
    openlineage: str | None = None
    registry_reads: str = "open"
    registry_roots: str | None = None
    qa_base_url: str | None = None
    qa_model: str | None = None
    qa_rps: float | None = None
    config_file: str | None = None

    def __post_init__(self) -> None:
        if self.registry_reads not in ("open", "token"):
            raise ValueError(f"registry_reads must be 'open' or 'token', got {self.registry_reads!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def served_roots(self) -> tuple[str, ...]:
        """What ``mmlake registry serve`` and its jobs may touch: the lake, $MMLAKE_HOME, and
        MMLAKE_REGISTRY_ROOTS."""
        extra = [r.strip() for r in (self.registry_roots or "").split(",") if r.strip()]
        return tuple(dict.fromkeys([self.lake, self.home, *extra]))

    def with_lake(self, lake: str | None) -> Settings:
        return replace(self, lake=lake) if lake else self

    def s3_options(self) -> Any:
        from datalake.store import s3_options_from_env

        return s3_options_from_env(endpoint_url=self.s3_endpoint, region=self.s3_region,
                                   rate_limit=self.s3_rate_limit, max_retries=self.s3_max_retries)

    def registry_client(self) -> Any:
        """The registry client for these settings (in-process on SQLite/PostgreSQL, or HTTP)."""
        from registry.client import HttpClient
        from registry.service import Registry

        if self.registry.startswith(("http://", "https://")):
            return HttpClient(self.registry, os.environ.get("MMLAKE_TOKEN"))
        return Registry(self.registry, lineage_target=self.openlineage)

    def open_lake(self) -> Any:
        from datalake import Lake
        from datalake.store import open_store

        return Lake(open_store(self.lake, options=self.s3_options() if self.lake.startswith("s3://") else None))


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = _KEYS[name]
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be {kind.__name__}, got {value!r}") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("MMLAKE_HOME") or ".mmlake").expanduser()
    config_path = Path(env["MMLAKE_CONFIG"]).expanduser() if env.get("MMLAKE_CONFIG") else home / "config.toml"
    values: dict[str, Any] = {
        "lake": str(home / "lake"),
        "registry": f"sqlite:///{home / 'registry.db'}",
    }
    used_config = None
    if config_path.is_file():
        try:
            doc = tomllib.loads(config_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{config_path}: not valid TOML ({exc})") from None
        unknown = sorted(set(doc) - set(_KEYS))
        if unknown:
            raise ValueError(f"{config_path}: unknown setting(s) {unknown}; known: {sorted(_KEYS)}")
        values.update({k: _coerce(k, v, str(config_path)) for k, v in doc.items()})
        used_config = str(config_path)
    elif env.get("MMLAKE_CONFIG"):
        raise ValueError(f"MMLAKE_CONFIG={env['MMLAKE_CONFIG']!r} does not exist")
    for name in _KEYS:
        var = f"MMLAKE_{name.upper()}"
        if env.get(var):
            values[name] = _coerce(name, env[var], var)
    return Settings(home=str(home), config_file=used_config, **values)
