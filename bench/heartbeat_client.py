"""Heartbeat client micro-benchmark (not a test): the engine's heartbeat client alone, CPU per
request against one local endpoint, for one or more source trees side by side in one run.

    .venv/bin/python bench/heartbeat_client.py
    git archive <commit> | tar -x -C /tmp/old     # another version of the client, e.g. main's
    .venv/bin/python bench/heartbeat_client.py --trees .,/tmp/old --rounds 5

Starts one endpoint process (a minimal keep-alive HTTP/1.1 server on uvloop answering every GET
with the same small JSON, so the client is the bottleneck), then for each round runs every
tree's client once, alternating, each in a fresh process: `heartbeats_run` from that tree's
`engine.heartbeat_client`, inside `session_kept()` (a lane), in batches of
`--batch` with `--concurrency` in flight, after one warm-up batch. It prints the client
process's CPU (user + system) per request and requests/s for each run, then the median per
tree. CPU per request is what decides how many checks a worker core does; the machine's other
load changes requests/s far more than it. Loopback only; no database.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"account_number": "bench", "status": "ACTIVE", "balance": "100.00"}).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


def serve(port: int) -> None:
    """The endpoint: one answer per request head, on keep-alive connections."""
    import asyncio

    import uvloop

    class Answering(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            count = self.buf.count(b"\r\n\r\n")
            if count:
                self.buf = self.buf.rsplit(b"\r\n\r\n", 1)[1]
                self.transport.write(ANSWER * count)

    async def main():
        server = await asyncio.get_running_loop().create_server(Answering, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def client(tree: str, port: int, requests: int, concurrency: int, batch: int) -> None:
    """One run in this process: prints {"cpu_us": ..., "rate": ..., "ok": ...} as JSON."""
    sys.path.insert(0, tree)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django

    django.setup()
    from engine import heartbeat_client as hc

    url = f"http://127.0.0.1:{port}/v1/account"
    token = "t" * 43

    def items(n: int) -> list:
        return [hc.HeartbeatRequest(key=i, url=url, access_token=token, group="sandbox") for i in range(n)]

    with hc.session_kept():
        hc.heartbeats_run(items(batch), concurrency=concurrency, timeout=30, per_group=concurrency)  # warm-up
        ok, cpu0, t0 = 0, time.process_time(), time.perf_counter()
        for done in range(0, requests, batch):
            results = hc.heartbeats_run(
                items(min(batch, requests - done)), concurrency=concurrency, timeout=30, per_group=concurrency
            )
            ok += sum(r.ok for r in results)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    print(json.dumps({"cpu_us": cpu / requests * 1e6, "rate": requests / wall, "ok": ok}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", default=".", help="comma-separated source trees (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000, help="measured requests per run")
    parser.add_argument("--concurrency", type=int, default=100, help="in flight (a lane's share of one broker)")
    parser.add_argument("--batch", type=int, default=500, help="requests per heartbeats_run (ENGINE_BATCH_SIZE)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.client:
        return client(args.client, args.port, args.requests, args.concurrency, args.batch)

    trees = [str(Path(t).resolve()) for t in args.trees.split(",") if t.strip()]
    port = args.port
    if not port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    endpoint = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                sys.exit("the endpoint did not start")
            time.sleep(0.1)
        runs: dict[str, list[dict]] = {tree: [] for tree in trees}
        print(f"{args.requests:,} GETs per run, {args.concurrency} in flight, batches of {args.batch}; "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
        for n in range(args.rounds):
            for tree in trees:
                out = subprocess.run(
                    [sys.executable, __file__, "--client", tree, "--port", str(port), "--requests",
                     str(args.requests), "--concurrency", str(args.concurrency), "--batch", str(args.batch)],
                    capture_output=True, text=True, cwd=tree, check=False,
                )  # fmt: skip
                if out.returncode:
                    sys.exit(f"{tree}: {out.stderr[-2000:]}")
                run = json.loads(out.stdout.strip().splitlines()[-1])
                run["load"] = os.getloadavg()[0]
                runs[tree].append(run)
                print(
                    f"round {n + 1} {tree}: {run['cpu_us']:.1f} µs CPU/request, {run['rate']:,.0f} req/s, "
                    f"{run['ok']:,} ok, load {run['load']:.1f}",
                    flush=True,
                )
        print()
        base = statistics.median(r["cpu_us"] for r in runs[trees[0]])
        for tree in trees:
            cpu = statistics.median(r["cpu_us"] for r in runs[tree])
            rate = statistics.median(r["rate"] for r in runs[tree])
            print(f"median {tree}: {cpu:.1f} µs CPU/request ({cpu / base:.2f}× the first), {rate:,.0f} req/s")
    finally:
        endpoint.terminate()
        endpoint.wait(timeout=10)


if __name__ == "__main__":
    main()
