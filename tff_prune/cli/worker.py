"""Starts a TFF worker on this machine for `run_simulation.py --workers`.

Example (on each worker machine, same package versions as the driver, same data cache):
  tff-prune-worker --port 8000

This execs TensorFlow Federated's own C++ executor service,
``tensorflow_federated/data/worker_binary --port=P`` (what TFF's local runtime starts for itself);
the driver connects with ``tff.framework.RemoteExecutor`` over gRPC. The worker builds its clients'
datasets itself from the TFF SQLite cache, so it needs the same cache path as the driver:
``~/.cache/tff_prune/<dataset>-<hash>/`` (or ``$TFF_PRUNE_CACHE_DIR``), e.g. made by running
``run_simulation.py --rounds 1`` once on that machine or copied from the driver.

SECURITY: worker_binary has no TLS and no authentication and listens on all interfaces. Run it
only on a private network or behind a firewall that admits only the driver. Stop it with Ctrl-C
(SIGINT) or SIGKILL; it may ignore SIGTERM for a while.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Optional, Sequence



def port_in_use(port: int) -> str:
    """Why ``port`` cannot be served on all interfaces ('' if it can): worker_binary would start, fail to bind
    (gRPC logs the error) and keep running without serving.

    Binds a probe socket to the wildcard address, IPv6 dual-stack where the host has IPv6, as gRPC does.
    """
    families = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")] if socket.has_ipv6 else \
        [(socket.AF_INET, "0.0.0.0")]
    for family, host in families:
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host: try IPv4
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: TIME_WAIT does not count
            s.bind((host, port))
            return ""
        except OSError as e:
            return e.strerror or str(e)
        finally:
            s.close()
    return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses flags and execs the worker (exit 2 on bad input or a busy --port; does not return otherwise)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="TCP port to serve on (1-65535)")
    p.add_argument("--max-concurrent-computation-calls", type=int, default=-1,
                   help="limit of concurrent calls in the worker (default: no limit)")
    p.add_argument("--print-command", action="store_true", help="print the worker command instead of running it")
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"--port: must be in 1..65535, got {args.port}")
    busy = port_in_use(args.port)
    if busy:
        p.error(f"--port: {args.port} is already in use ({busy}); another worker may be running there: stop it, "
                f"or choose another --port")
    from tff_prune.federated.distributed import WORKER_BINARY, worker_command

    if not os.access(WORKER_BINARY, os.X_OK):
        print(f"{p.prog}: error: TFF's worker binary is missing or not executable: {WORKER_BINARY}; "
              f"reinstall tensorflow-federated==0.87.0 (make setup)", file=sys.stderr)
        return 2
    cmd = worker_command(args.port, args.max_concurrent_computation_calls)
    if args.print_command:
        print(" ".join(cmd))
        return 0
    print(f"TFF worker on port {args.port} (no TLS, no authentication: private network only)", flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
