"""`svcpulse dashboards push`: install the dashboards (and, if asked, the datasources) into a running
Grafana through its HTTP API with grafana-client. Idempotent: the folder is created once, datasources
are updated in place by uid, dashboards are saved with overwrite=True.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from core.settings import Settings
from dashboards.build import FOLDER_TITLE, FOLDER_UID, dashboards
from dashboards.sources import api_datasource, clickhouse_datasource

Say = Callable[[str], None]


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says which step."""


def _ensure_folder(grafana: GrafanaApi) -> None:
    try:
        grafana.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as err:
        if err.status_code != 404:
            raise
        grafana.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)


def _upsert_datasource(grafana: GrafanaApi, datasource: dict[str, Any]) -> str:
    try:
        grafana.datasource.get_datasource_by_uid(datasource["uid"])
    except GrafanaClientError as err:
        if err.status_code != 404:
            raise
        grafana.datasource.create_datasource(datasource)
        return "created"
    grafana.datasource.update_datasource_by_uid(datasource["uid"], datasource)
    return "updated"


def datasources_from(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The datasources the flags describe: Infinity with --api-url, ClickHouse with --clickhouse-host."""
    found, settings = [], Settings()
    if args.api_url:
        found.append(api_datasource(args.api_url, args.api_token or settings.api_token))
    if args.clickhouse_host:
        password = args.clickhouse_password or settings.clickhouse_password
        found.append(clickhouse_datasource(args.clickhouse_host, args.clickhouse_port, args.clickhouse_user,
                                           password, args.clickhouse_database))
    return found


def push(url: str, token: str, datasources: list[dict[str, Any]], say: Say = print) -> list[str]:
    """Install everything; the uids of the dashboards saved."""
    grafana = GrafanaApi.from_url(url, credential=token or None, timeout=30)
    saved = []
    try:
        for datasource in datasources:
            say(f"[dashboards] datasource {datasource['uid']} ({datasource['type']}) "
                f"{_upsert_datasource(grafana, datasource)}")
        _ensure_folder(grafana)
        for uid, model in dashboards().items():
            answer = grafana.dashboard.update_dashboard({"dashboard": model, "folderUid": FOLDER_UID,
                                                         "overwrite": True, "message": "svcpulse dashboards push"})
            say(f"[dashboards] {uid} -> {answer.get('url', '')} (version {answer.get('version', '?')})")
            saved.append(uid)
    except GrafanaException as err:
        raise PushError(f"Grafana at {url} refused: {err.status_code} {err.message}") from None
    except OSError as err:  # connection refused, DNS, TLS: niquests' errors derive from OSError
        raise PushError(f"cannot reach Grafana at {url}: {err}") from None
    return saved


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="Grafana base URL, e.g. http://127.0.0.1:3000")
    parser.add_argument("--token",
                        help="Grafana service-account token (default $GRAFANA_TOKEN; or user:pass@ in --url)")
    parser.add_argument("--api-url", help="also create/update the Infinity datasource: the svcpulse API URL as "
                        "Grafana reaches it")
    parser.add_argument("--api-token",
                        help="viewer token Grafana sends to the API (default $SVCPULSE_API_TOKEN)")
    parser.add_argument("--clickhouse-host", help="also create/update the ClickHouse datasource on this host")
    parser.add_argument("--clickhouse-port", type=int, default=9000, help="native protocol port (default 9000)")
    parser.add_argument("--clickhouse-user", default="default", help="ClickHouse user (default 'default')")
    parser.add_argument("--clickhouse-password",
                        help="ClickHouse password (default $SVCPULSE_CLICKHOUSE_PASSWORD)")
    parser.add_argument("--clickhouse-database", default="svcpulse", help="database (default svcpulse)")


def run(args: argparse.Namespace) -> int:
    try:
        saved = push(args.url, args.token or Settings().grafana_token, datasources_from(args))
    except PushError as err:
        print(f"svcpulse dashboards push: {err}", file=sys.stderr)
        return 2
    print(f"[dashboards] {len(saved)} dashboards in folder {FOLDER_TITLE!r} (uid {FOLDER_UID})")
    return 0
