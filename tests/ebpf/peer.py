"""One end of a test TCP connection, run as its own process so the PID and comm are known.

    python peer.py server HOST NBYTES_TO_SEND [PORT]     -> prints "port P", accepts one connection
    python peer.py client HOST PORT NBYTES_TO_SEND [CGROUP_PROCS_FILE]  -> prints "local ADDR PORT"

Each side sends its bytes, reads until the peer closes and then closes; the side that sends data
closes first (its FIN follows its last write), so both an active and a passive close occur. At least
one side must send something, or both wait for the other to close.
"""

from __future__ import annotations

import os
import socket
import sys

CHUNK = 64 * 1024


def _name(role: str) -> None:
    # /proc/self/comm renames the main thread, which is what bpf_get_current_comm() reports.
    with open("/proc/self/comm", "w") as comm:
        comm.write(f"sp-{role}")


def _exchange(conn: socket.socket, to_send: int) -> int:
    if to_send:
        conn.sendall(b"x" * to_send)
        conn.shutdown(socket.SHUT_WR)
    received = 0
    while chunk := conn.recv(CHUNK):
        received += len(chunk)
    conn.close()
    return received


def server(host: str, to_send: int, port: int = 0) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1)
        print("port", listener.getsockname()[1], flush=True)
        conn, _peer = listener.accept()
        print("received", _exchange(conn, to_send), flush=True)


def client(host: str, port: int, to_send: int, cgroup_procs: str | None) -> None:
    if cgroup_procs:
        with open(cgroup_procs, "w") as procs:
            procs.write(str(os.getpid()))
    conn = socket.create_connection((host, port))
    laddr, lport = conn.getsockname()[:2]
    print("local", laddr, lport, flush=True)
    print("received", _exchange(conn, to_send), flush=True)


if __name__ == "__main__":
    role = sys.argv[1]
    _name(role)
    if role == "server":
        server(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
