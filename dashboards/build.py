"""`svcpulse dashboards build`: the five dashboards as Grafana JSON plus the provisioning files.

Layout written under --out (default dashboards/):
    svcpulse-capacity.json, svcpulse-rpc-health.json, svcpulse-connections.json, svcpulse-weights.json,
    svcpulse-map.json
    provisioning/datasources/svcpulse.yaml   Infinity (the API) + ClickHouse, fixed uids
    provisioning/dashboards/svcpulse.yaml    a `type: file` provider reading the JSON from DASHBOARD_PATH
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import capacity, connections, rpc_health, service_map, weights
from dashboards.sources import provisioning_datasources

FOLDER_UID = "svcpulse"
FOLDER_TITLE = "svcpulse"
DASHBOARD_PATH = "/var/lib/grafana/dashboards/svcpulse"  # where the provider expects the JSON inside Grafana
BUILDERS: dict[str, Callable[[], db.Dashboard]] = {
    capacity.UID: capacity.dashboard,
    rpc_health.UID: rpc_health.dashboard,
    connections.UID: connections.dashboard,
    weights.UID: weights.dashboard,
    service_map.UID: service_map.dashboard,
}


def render(dashboard: db.Dashboard) -> dict[str, Any]:
    """The dashboard model as plain JSON data (what Grafana stores and the HTTP API takes), with stable panel
    ids: the SDK leaves them unset (rows get 0), and links or alerts to a panel need a fixed id."""
    model = json.loads(JSONEncoder(sort_keys=True).encode(dashboard.build()))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
    return model


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard by uid."""
    return {uid: render(build()) for uid, build in BUILDERS.items()}


def provisioning_dashboards() -> dict[str, Any]:
    return {"apiVersion": 1, "providers": [
        {"name": "svcpulse", "orgId": 1, "folder": FOLDER_TITLE, "folderUid": FOLDER_UID, "type": "file",
         "disableDeletion": False, "allowUiUpdates": False, "updateIntervalSeconds": 60,
         "options": {"path": DASHBOARD_PATH, "foldersFromFilesStructure": False}}]}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_all(out: Path) -> list[Path]:
    """Write the dashboards and provisioning files under `out`; the paths written, in order."""
    written = [_write(out / f"{uid}.json", json.dumps(model, indent=2, sort_keys=True) + "\n")
               for uid, model in dashboards().items()]
    for kind, doc in (("datasources", provisioning_datasources()), ("dashboards", provisioning_dashboards())):
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        written.append(_write(out / "provisioning" / kind / "svcpulse.yaml", text))
    return written


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("dashboards"), help="directory to write (default "
                        "dashboards/)")


def run(args: argparse.Namespace) -> int:
    for path in write_all(args.out):
        print(f"[dashboards] wrote {path}")
    print(f"[dashboards] provision: mount {args.out}/*.json at {DASHBOARD_PATH} and {args.out}/provisioning "
          "at /etc/grafana/provisioning, or run `svcpulse dashboards push`")
    return 0
