"""Keep an nginx `upstream` block in step with the svcpulse weight feed (docs/nginx.md).

    svcpulse balancer nginx --api http://svcpulse:8000 --service shop.cart \\
        --upstream cart --file /etc/nginx/svcpulse/cart.conf

The adapter owns one file holding one `upstream` block, included from nginx's http {} context.
Each change: write the file (atomically), `nginx -t`, then a graceful reload (SIGHUP to the master),
verified by the master starting new workers and the old ones no longer accepting; any failure puts
the last good file back, so the file on disk is always what nginx runs. A render identical to the
file on disk causes no reload, and the loop allows at most one reload per --min-interval (default 2 s).

Mapping (docs/nginx.md explains why):
- weight N > 0                 -> `server ADDR weight=N;`
- ejected                      -> `server ADDR backup;`  nothing unless every other server is down
- drained, or weight 0         -> `server ADDR down;`
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from balancer import loop
from balancer.adapter import Adapter, BalancerError, routable_weights, scale_down
from balancer.client import FeedView
from balancer.loop import add_loop_flags

# nginx takes any positive int; feed weights never exceed 10,000 (registry and override limits), so
# this ceiling only guards the sum against overflow on 32-bit builds should that ever change.
MAX_WEIGHT = 10_000


def render_upstream(name: str, service: str, view: FeedView, options: Sequence[str] = ()) -> str:
    """The file's text: one upstream block, servers by name, then the extra directives (pure)."""
    weights = scale_down(routable_weights(view), MAX_WEIGHT)
    lines = [f"# Written by `svcpulse balancer nginx` from the weight feed of {service}: do not edit.",
             f"upstream {name} {{"]
    for instance in sorted(view.weights):
        state = view.states.get(instance, "")
        if instance in weights:
            lines.append(f"    server {instance} weight={weights[instance]};")
        elif state == "ejected":
            lines.append(f"    server {instance} backup;  # ejected: only if every other server is down")
        else:
            lines.append(f"    server {instance} down;  # {state or 'weight 0'}")
    lines += [f"    {option.strip().rstrip(';')};" for option in options]
    return "\n".join([*lines, "}", ""])


def children(pid: int) -> set[int]:
    """Process ids whose parent is `pid` (nginx's workers, cache loader and manager)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def is_accepting_worker(pid: int) -> bool:
    """Whether `pid` is an nginx worker that still accepts connections: once told to quit, a worker closes
    its listening sockets and retitles itself "worker process is shutting down"."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # exited
    return b"worker process" in title and b"shutting down" not in title


class NginxAdapter(Adapter):
    kind = "nginx"
    default_min_interval_s = 2.0  # every apply is a reload: new workers, old ones draining

    def __init__(self, upstream: str, path: str, service: str, *, nginx: str = "nginx", conf: str | None = None,
                 pid_file: str = "/run/nginx.pid", options: Sequence[str] = (), reload_timeout_s: float = 10.0) -> None:
        self.upstream, self.path, self.service = upstream, Path(path), service
        self.nginx, self.conf, self.pid_file = nginx, conf, Path(pid_file)
        self.options, self.reload_timeout_s = tuple(options), reload_timeout_s

    def target(self) -> str:
        return f"upstream {self.upstream} in {self.path}"

    def render(self, view: FeedView) -> str:
        return render_upstream(self.upstream, self.service, view, self.options)

    def apply(self, rendered: str) -> None:
        previous = self._read()
        if previous == rendered:
            return  # nginx loaded this file already (at its start, or our last reload)
        self._write(rendered)
        try:
            self._test()
            self._reload()
        except BalancerError:
            self._restore(previous)
            raise

    def verify(self, rendered: str) -> str:
        return "" if self._read() == rendered else f"{self.path} differs from the feed's rendering"

    def _read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def _write(self, text: str) -> None:
        """Atomically: nginx (or a reader) never sees half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)

    def _restore(self, previous: str | None) -> None:
        if previous is None:
            self.path.unlink(missing_ok=True)
        else:
            self._write(previous)

    def _test(self) -> None:
        command = [self.nginx, "-t", "-q", *(["-c", self.conf] if self.conf else [])]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise BalancerError(f"{' '.join(command)}: {err}") from err
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise BalancerError(f"nginx -t rejected the new {self.path}: {' | '.join(why)}")

    def _reload(self) -> None:
        """SIGHUP to the master (what `nginx -s reload` sends); done when a new worker runs and no worker of
        the old configuration takes connections any more. The master lets the old workers route for
        100 ms after starting the new ones (`ngx_msleep(100)` before it signals them): returning at the
        new worker's start let new connections land on an old worker and keep the old weights."""
        try:
            master = int(self.pid_file.read_text().split()[0])
            before = children(master)
            os.kill(master, signal.SIGHUP)
        except (OSError, ValueError, IndexError) as err:
            raise BalancerError(f"cannot reload nginx through {self.pid_file}: {err} (is nginx running?)") from err
        deadline = time.monotonic() + self.reload_timeout_s
        while not children(master) - before:
            if time.monotonic() > deadline:
                raise BalancerError(f"nginx (pid {master}) started no new worker within {self.reload_timeout_s:g} s "
                                    "of the reload: it kept the old configuration (see its error log)")
            time.sleep(0.01)
        while accepting := [pid for pid in before if is_accepting_worker(pid)]:
            if time.monotonic() > deadline:
                raise BalancerError(f"nginx's old worker(s) {accepting} still take connections "
                                    f"{self.reload_timeout_s:g} s after the reload (see its error log)")
            time.sleep(0.01)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", required=True, help="name of the upstream block to write, e.g. cart")
    parser.add_argument("--file", required=True, help="file holding the block (include it in nginx's http {})")
    parser.add_argument("--upstream-option", action="append", default=[], metavar="DIRECTIVE",
                        help='extra directive inside the block, e.g. "keepalive 32" or "least_conn" (repeatable)')
    parser.add_argument("--nginx", default="nginx", help="nginx binary (default: nginx on PATH)")
    parser.add_argument("--conf", help="nginx's main configuration for `nginx -t -c` (default: nginx's own)")
    parser.add_argument("--pid-file", default="/run/nginx.pid", help="the master's pid file (default /run/nginx.pid)")
    add_loop_flags(parser, NginxAdapter.default_min_interval_s)


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    adapter = NginxAdapter(args.upstream, args.file, args.service, nginx=args.nginx, conf=args.conf,
                           pid_file=args.pid_file, options=args.upstream_option)
    return loop.run(args, adapter, stop)
