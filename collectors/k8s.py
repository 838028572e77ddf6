"""Workload names from the Kubernetes API: pod UID -> namespace/owner, for the node collectors.

A cgroup path gives a pod's UID (collectors/workload.py); operators name pods by what runs them. With
the in-cluster service account (token and CA under /var/run/secrets/kubernetes.io/serviceaccount), a
collector lists the pods of its node (`GET /api/v1/pods?fieldSelector=spec.nodeName=NODE`) and follows
each pod's controller: ReplicaSet -> Deployment, Job -> CronJob (one GET per ReplicaSet or Job, cached),
StatefulSet and DaemonSet directly. The workload becomes "namespace/name" with the owner's kind
("shop/checkout", "deployment"); a pod without a controller is "namespace/pod" ("pod").

The hot path never waits for the API: a namer answers from memory, and a UID it does not know yet is
named from its path while a background thread re-lists (at most every MIN_RELIST_S). API errors keep
the last good answer and are logged once per kind of failure. RBAC (deploy/k8s/50-collectors.yaml):
get/list pods; get replicasets (apps) and jobs (batch). When a ReplicaSet may not be read, a
Deployment's name still follows from the pod's `pod-template-hash` label (the ReplicaSet is named
"<deployment>-<hash>").
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from collectors.workload import POD, names_of, workload_of
from core.settings import Settings

log = logging.getLogger("svcpulse.k8s")
MIN_RELIST_S = 5.0  # an unknown pod UID triggers a re-list, but not more often than this
TIMEOUT_S = 5.0
Names = tuple[str, str]  # (workload, workload_kind)
# Controllers whose own controller names the workload, and where the API serves them.
_PARENTS = {"ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
            "Job": "/apis/batch/v1/namespaces/{ns}/jobs/{name}"}


class KubeError(RuntimeError):
    """The Kubernetes API refused or could not be reached; the message says which call and why."""


class Namer(Protocol):
    def __call__(self, cgroup_path: str) -> Names: ...
    def close(self) -> None: ...


class PathNames:
    """Names from cgroup paths alone (outside Kubernetes, or with the API lookup off)."""

    def __call__(self, cgroup_path: str) -> Names:
        return names_of(cgroup_path)

    def close(self) -> None:
        pass


class KubeApi:
    """GETs against the API server as the pod's service account; the token is re-read on every listing
    (projected tokens rotate about hourly)."""

    def __init__(self, base_url: str, account_dir: Path) -> None:
        self.base_url, self.account_dir = base_url.rstrip("/"), account_dir
        ca = account_dir / "ca.crt"
        verify = ssl.create_default_context(cafile=str(ca)) if ca.exists() else True
        self._client = httpx.Client(base_url=self.base_url, timeout=TIMEOUT_S, verify=verify)
        self._token = ""

    def refresh_token(self) -> None:
        try:
            self._token = (self.account_dir / "token").read_text().strip()
        except OSError as err:
            raise KubeError(f"no service account token in {self.account_dir}: {err.strerror}") from err

    def get(self, path: str) -> dict[str, Any]:
        try:
            answer = self._client.get(path, headers={"Authorization": f"Bearer {self._token}",
                                                     "Accept": "application/json"})
        except httpx.HTTPError as err:
            raise KubeError(f"GET {self.base_url}{path}: {type(err).__name__}: {err}") from err
        if answer.status_code != 200:
            try:
                reason = answer.json().get("message", answer.text[:200])
            except ValueError:
                reason = answer.text[:200]
            raise KubeError(f"GET {path}: {answer.status_code} {reason}")
        return answer.json()  # type: ignore[no-any-return]

    def pods(self, node: str) -> list[dict[str, Any]]:
        """The pods on `node` (every pod in the cluster when node is "")."""
        selector = f"?fieldSelector={quote('spec.nodeName=' + node)}" if node else ""
        return list(self.get(f"/api/v1/pods{selector}").get("items") or [])

    def close(self) -> None:
        self._client.close()


def controller(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with controller=true (the object that manages this one), if any."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


Lookup = Callable[[str, str, str], Mapping[str, Any] | None]  # (kind, namespace, name) -> object or None


def owner_of(pod: Mapping[str, Any], lookup: Lookup) -> Names:
    """("namespace/name", kind) of what runs the pod: Deployment via its ReplicaSet, CronJob via its Job,
    StatefulSet, DaemonSet or any other controller; the pod itself when nothing controls it."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    ref = controller(meta)
    if ref is None:
        return f"{namespace}/{meta.get('name', '')}", POD
    kind, name = ref.get("kind", ""), ref.get("name", "")
    if kind in _PARENTS:
        parent = lookup(kind, namespace, name)
        grand = controller(parent.get("metadata") or {}) if parent is not None else None
        if grand is not None:
            return f"{namespace}/{grand.get('name', '')}", str(grand.get("kind", "")).lower()
        template_hash = (meta.get("labels") or {}).get("pod-template-hash", "")
        if parent is None and kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return f"{namespace}/{name[:-len(template_hash) - 1]}", "deployment"  # RS unreadable: its naming rule
    return f"{namespace}/{name}", kind.lower()


class PodDirectory:
    """Pod UID -> names for the pods of one node, rebuilt from one listing; controllers' parents cached."""

    def __init__(self, api: KubeApi, node: str) -> None:
        self.api, self.node = api, node
        self.names: dict[str, Names] = {}
        self._parents: dict[tuple[str, str, str], Mapping[str, Any] | None] = {}
        self._failures: set[str] = set()

    def refresh(self) -> None:
        """List the node's pods and name each; raises KubeError when the listing fails."""
        self.api.refresh_token()
        pods = self.api.pods(self.node)
        seen: set[tuple[str, str, str]] = set()

        def lookup(kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
            key = (kind, namespace, name)
            seen.add(key)
            if key not in self._parents:
                self._parents[key] = self._fetch(kind, namespace, name)
            return self._parents[key]

        self.names = {pod["metadata"]["uid"]: owner_of(pod, lookup) for pod in pods
                      if (pod.get("metadata") or {}).get("uid")}
        self._parents = {key: value for key, value in self._parents.items() if key in seen}

    def _fetch(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            return self.api.get(_PARENTS[kind].format(ns=quote(namespace), name=quote(name)))
        except KubeError as err:
            if kind not in self._failures:  # e.g. RBAC without replicasets: say so once, name by labels
                self._failures.add(kind)
                log.warning("workload names: cannot read a %s (%s); naming from pod labels", kind, err)
            return None


class KubeNamer:
    """A Namer backed by a PodDirectory that a background thread keeps fresh."""

    def __init__(self, directory: PodDirectory, refresh_s: float) -> None:
        self.directory, self.refresh_s = directory, refresh_s
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._last_error = ""
        self._listed_at = -MIN_RELIST_S
        self._thread = threading.Thread(target=self._run, name="svcpulse-k8s-names", daemon=True)

    def start(self) -> KubeNamer:
        self.relist()
        self._thread.start()
        return self

    def __call__(self, cgroup_path: str) -> Names:
        uid = workload_of(cgroup_path).pod_uid
        if uid:
            found = self.directory.names.get(uid)
            if found is not None:
                return found
            self._wanted.set()  # a pod started after the last listing: re-list soon
        return names_of(cgroup_path)

    def relist(self) -> None:
        self._listed_at = time.monotonic()
        try:
            self.directory.refresh()
        except KubeError as err:
            if str(err) != self._last_error:
                log.warning("workload names: %s; pods keep their path names until the API answers", err)
            self._last_error = str(err)
            return
        if self._last_error:
            log.warning("workload names: the Kubernetes API answers again (%d pods)", len(self.directory.names))
        self._last_error = ""

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted.wait(self.refresh_s)
            self._wanted.clear()
            if self._stop.wait(max(0.0, self._listed_at + MIN_RELIST_S - time.monotonic())):
                return
            self.relist()

    def close(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT_S * 2)
        self.directory.api.close()


def api_url(settings: Settings) -> str:
    """The API server: SVCPULSE_K8S_API_URL, else in-cluster from KUBERNETES_SERVICE_HOST/PORT, else ""."""
    if settings.k8s_api_url:
        return settings.k8s_api_url
    host = settings.kubernetes_service_host
    if not host:
        return ""
    return f"https://{f'[{host}]' if ':' in host else host}:{settings.kubernetes_service_port}"


def namer_for(settings: Settings) -> Namer:
    """Kubernetes names when SVCPULSE_K8S_NAMES=on, or =auto inside a cluster (an API server address and a
    mounted service account); path names otherwise. The caller closes it."""
    account = Path(settings.k8s_service_account_dir)
    url = api_url(settings)
    wanted = settings.k8s_names == "on" or (settings.k8s_names == "auto" and bool(url) and
                                            (account / "token").exists())
    if not wanted:
        return PathNames()
    if not url:
        raise KubeError("SVCPULSE_K8S_NAMES=on needs the API server: set SVCPULSE_K8S_API_URL or run in a pod "
                        "(KUBERNETES_SERVICE_HOST)")
    if not settings.node_name:
        log.warning("workload names: SVCPULSE_NODE_NAME is not set; listing every pod of the cluster")
    directory = PodDirectory(KubeApi(url, account), settings.node_name)
    return KubeNamer(directory, settings.k8s_refresh_s).start()
