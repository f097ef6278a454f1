#!/usr/bin/env python3
"""The `slow` scenario: a burst of slow pages on a small php-fpm pool.

N clients (12 and 40) at once, each on its own connection, each doing ONE
GET /slow.php?ms=300, released together by a barrier. Recorded per burst:
every request's status and the wall time from the release to the last
response. The floor is the pool's throughput: ideal = ceil(N / children) x 0.3 s
(a worker runs one request at a time).

Pools (php-fpm, one pool per server, pool kind and socket: a kept-alive idle
connection pins its worker, so servers must not share one):
  static2   pm = static, pm.max_children = 2                 ideal = ceil(N / 2) x 0.3
  dynamic5  Debian's default www.conf: pm = dynamic, max_children 5,
            start_servers 2, min/max_spare_servers 1/3       ideal = ceil(N / 5) x 0.3
            measured warm: an unrecorded burst of the same N runs just before
            each recorded one, so php-fpm has spawned its children.

Servers: gateway (no tuning flags: --listen, --upstream, --root only), nginx
(upstream keepalive = the pool's max_children + fastcgi_keep_conn on, as
run.py tunes it) and nginx-nokeep (a new php-fpm connection per request),
over unix and tcp sockets. Servers are interleaved within each round; the
table gives the median and the worst wall / ideal over the rounds.

    python3 bench/slow.py [--rounds 3] [--clients 12,40] [--sockets unix,tcp]
                          [--pools static2,dynamic5] [--out bench/results]
    python3 bench/run.py --scenarios slow      # the same, via the suite

Writes bench/results/DATE-COMMIT-slow.{md,json}. Needs php-fpm and nginx
(apt-get install php8.2-fpm nginx) and a release build (it runs cargo build).
"""

import argparse
import collections
import http.client
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, find_php_fpm, free_port, stop_all, write_nginx_conf  # noqa: E402

SLEEP_MS = 300

POOLS = {
    # name: (php-fpm pool settings, children the ideal divides by, warm-up burst first)
    "static2": ("pm = static\npm.max_children = 2\n", 2, False),
    "dynamic5": ("pm = dynamic\npm.max_children = 5\npm.start_servers = 2\n"
                 "pm.min_spare_servers = 1\npm.max_spare_servers = 3\n", 5, True),
}
SERVERS = ("gateway", "nginx", "nginx-nokeep")


def burst(port, path, n, timeout):
    """n clients, each on its own connection (opened beforehand), send one GET
    at the same instant. Returns (wall seconds to the last response,
    [status or failure name per client], [seconds per client])."""
    barrier = threading.Barrier(n + 1)
    statuses = [None] * n
    ends = [None] * n

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.connect()
        except OSError as e:
            statuses[i] = f"connect {type(e).__name__}"
        try:
            barrier.wait(timeout=timeout)
        except threading.BrokenBarrierError:
            statuses[i] = statuses[i] or "barrier"
        if statuses[i] is None:
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                statuses[i] = resp.status
            except socket.timeout:
                statuses[i] = "timeout"
            except (OSError, http.client.HTTPException) as e:
                statuses[i] = type(e).__name__
        ends[i] = time.monotonic()
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(timeout=timeout)
    t0 = time.monotonic()
    for t in threads:
        t.join(timeout=max(0.1, t0 + timeout + 5 - time.monotonic()))
    now = time.monotonic()
    statuses = [s if s is not None else "stuck" for s in statuses]
    times = [(e if e is not None else now) - t0 for e in ends]
    return max(times), statuses, times


def pool_children(pool):
    """php-fpm worker processes of one pool, counted from /proc cmdlines."""
    want = f"php-fpm: pool {pool}".encode()
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().rstrip(b"\0 ").endswith(want):
                        count += 1
            except OSError:
                pass
    return count


def wait_until(check, what, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not come up")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="12,40", help="burst sizes N")
    ap.add_argument("--sockets", default="unix,tcp")
    ap.add_argument("--pools", default=",".join(POOLS))
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="client timeout per request, seconds (a hang shows as a failure)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args(argv)
    clients = [int(n) for n in args.clients.split(",")]
    sockets = args.sockets.split(",")
    pools = args.pools.split(",")
    kinds = args.servers.split(",")
    for p in pools:
        if p not in POOLS:
            sys.exit(f"unknown pool {p} (known: {', '.join(POOLS)})")
    for k in kinds:
        if k not in SERVERS:
            sys.exit(f"unknown server {k} (known: {', '.join(SERVERS)})")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if any(k.startswith("nginx") for k in kinds) and not os.path.exists(nginx_bin):
        sys.exit("nginx not found: apt-get install nginx")
    fpm_bin = find_php_fpm()
    fpm_version = subprocess.run([fpm_bin, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    command = shlex.join(["python3", os.path.relpath(os.path.abspath(sys.argv[0]))] + sys.argv[1:])

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    gateway_bin = os.path.join(ROOT, "target", "release", "fcgi-gateway")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
    dirty = [line[3:] for line in dirty if line.strip()]

    work = tempfile.mkdtemp(prefix="fcgi-bench-slow.")
    os.chmod(work, 0o755)  # nginx workers run unprivileged and must reach the sockets
    docroot = os.path.join(work, "www")
    shutil.copytree(os.path.join(ROOT, "fixtures", "php"), docroot)
    with open(os.path.join(docroot, "ready.txt"), "w") as f:
        f.write("ok\n")  # readiness probe that does not touch php-fpm
    os.chmod(docroot, 0o755)
    path = f"/slow.php?ms={SLEEP_MS}"

    procs = []

    def start(cmd):
        # A session of its own, as run.py starts them (why: there).
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        procs.append(p)
        return p

    runs = collections.defaultdict(list)  # (pool, n, sock, server) -> [run]
    try:
        as_root = os.geteuid() == 0
        user = "user = root\ngroup = root\n" if as_root else ""
        conf = [f"[global]\npid = {work}/fpm.pid\nerror_log = {work}/fpm.log\ndaemonize = no\n"]
        upstream, fpm_probes = {}, []
        for pool in pools:
            for kind in kinds:
                for sock in sockets:
                    name = f"{pool}-{kind}-{sock}"
                    if sock == "unix":
                        listen = f"{work}/{name}.sock"
                        fpm_probes.append(lambda p=listen: os.path.exists(p))
                    else:
                        listen = f"127.0.0.1:{free_port()}"
                        fpm_probes.append(lambda a=listen: socket.create_connection(
                            (a.split(":")[0], int(a.split(":")[1])), timeout=1).close() or True)
                    upstream[name] = listen
                    conf.append(f"[{name}]\n{user}listen = {listen}\nlisten.mode = 0666\n"
                                + POOLS[pool][0])
        with open(f"{work}/fpm.conf", "w") as f:
            f.write("\n".join(conf))
        start([fpm_bin, "-F", "-y", f"{work}/fpm.conf"] + (["-R"] if as_root else []))
        wait_until(lambda: all(probe() for probe in fpm_probes), "php-fpm")

        ports = {}
        nginx_servers = []
        for pool in pools:
            for kind in [k for k in kinds if k.startswith("nginx")]:
                keep = kind == "nginx"
                for sock in sockets:
                    name = f"{pool}-{kind}-{sock}"
                    up = upstream[name]
                    target = f"unix:{up}" if sock == "unix" else up
                    ident = name.replace("-", "_")
                    keepalive = f"keepalive {POOLS[pool][1]};" if keep else ""
                    keep_conn = "fastcgi_keep_conn on;" if keep else ""
                    ports[name] = free_port()
                    nginx_servers.append(f"""
    upstream {ident} {{ server {target}; {keepalive} }}
    server {{
        listen 127.0.0.1:{ports[name]}; root {docroot};
        location ~ \\.php$ {{
            try_files $fastcgi_script_name =404;
            include /etc/nginx/fastcgi.conf;
            {keep_conn} fastcgi_pass {ident};
        }}
    }}""")
        if nginx_servers:
            write_nginx_conf(work, 1, nginx_servers)
            start([nginx_bin, "-c", f"{work}/nginx.conf", "-e", f"{work}/nginx-error.log"])
        if "gateway" in kinds:
            for pool in pools:
                for sock in sockets:
                    name = f"{pool}-gateway-{sock}"
                    up = upstream[name]
                    ports[name] = free_port()
                    start([gateway_bin, "serve", "--listen", f"127.0.0.1:{ports[name]}",
                           "--upstream", f"unix:{up}" if sock == "unix" else f"tcp:{up}",
                           "--root", docroot])

        def ready(port):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                conn.request("GET", "/ready.txt")
                return conn.getresponse().status == 200
            finally:
                conn.close()

        for name, port in ports.items():
            wait_until(lambda: ready(port), name)

        for r in range(args.rounds):
            for pool in pools:
                children, warm = POOLS[pool][1], POOLS[pool][2]
                for n in clients:
                    ideal = -(-n // children) * SLEEP_MS / 1000
                    for sock in sockets:
                        # rotate the order each round, so no server always goes first
                        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
                        for kind in order:
                            name = f"{pool}-{kind}-{sock}"
                            if warm:
                                burst(ports[name], path, n, args.timeout)
                            workers = pool_children(name)
                            wall, statuses, times = burst(ports[name], path, n, args.timeout)
                            bad = collections.Counter(str(s) for s in statuses if s != 200)
                            runs[(pool, n, sock, kind)].append({
                                "round": r + 1, "wall_s": wall, "ratio": wall / ideal,
                                "fpm_children_at_start": workers,
                                "non200": dict(bad), "latencies_s": sorted(times)})
                            print(f"round {r + 1} {pool:8} N={n:<3} {sock:4} {kind:12} "
                                  f"wall {wall:6.2f} s  x{wall / ideal:5.2f} ideal  "
                                  f"fpm children at start {workers}  "
                                  f"non-200 {sum(bad.values())} {dict(bad) or ''}", flush=True)
                            time.sleep(0.2)
    finally:
        stop_all(procs, work)

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}"
    rows = []
    for pool in pools:
        children = POOLS[pool][1]
        for n in clients:
            for sock in sockets:
                for kind in kinds:
                    rs = runs[(pool, n, sock, kind)]
                    bad = collections.Counter()
                    for x in rs:
                        bad.update(x["non200"])
                    rows.append({
                        "pool": pool, "clients": n, "socket": sock, "server": kind,
                        "ideal_s": -(-n // children) * SLEEP_MS / 1000,
                        "wall_s_median": statistics.median(x["wall_s"] for x in rs),
                        "ratio_median": statistics.median(x["ratio"] for x in rs),
                        "ratio_worst": max(x["ratio"] for x in rs),
                        "non200_total": sum(bad.values()), "non200": dict(bad), "runs": rs})

    commit_note = commit + (f" (plus uncommitted changes to {', '.join(dirty)})" if dirty else "")
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"{stamp[:10]}-{commit}-slow")
    doc = {"commit": commit, "uncommitted": dirty, "date": stamp, "machine": machine,
           "php_fpm": fpm_version, "command": command, "rounds": args.rounds,
           "sleep_ms": SLEEP_MS, "client_timeout_s": args.timeout, "rows": rows}
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=2)

    lines = [f"{fpm_version}; commit {commit_note}; `{command}`", "",
             f"# fcgi-gateway slow-page bursts, commit {commit}, {stamp}", "",
             f"Machine: {machine}. N clients at once, each on its own connection, one "
             f"GET /slow.php?ms={SLEEP_MS} each; wall = from the release to the last response; "
             f"ideal = ceil(N / max_children) x {SLEEP_MS / 1000} s. "
             f"{args.rounds} interleaved round(s): median and worst wall/ideal, non-200 summed "
             f"over the rounds (client timeout {args.timeout:g} s per request). Pools: static2 = "
             f"pm static, 2 children; dynamic5 = Debian's www.conf (pm dynamic, max_children 5, "
             f"start 2, spare 1-3), warmed by an unrecorded burst of the same N just before each "
             f"recorded one. "
             f"gateway: no tuning flags; nginx: upstream keepalive = max_children + "
             f"fastcgi_keep_conn on; nginx-nokeep: a php-fpm connection per request. "
             f"Each server has its own pool.", "",
             "| pool | N | socket | server | wall s | ×ideal median | ×ideal worst | non-200 |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        bad = ", ".join(f"{k}×{v}" for k, v in sorted(row["non200"].items()))
        lines.append(f"| {row['pool']} | {row['clients']} | {row['socket']} | {row['server']} "
                     f"| {row['wall_s_median']:.2f} | {row['ratio_median']:.2f} "
                     f"| {row['ratio_worst']:.2f} | {row['non200_total']}{f' ({bad})' if bad else ''} |")
    table = "\n".join(lines) + "\n"
    with open(base + ".md", "w") as f:
        f.write(table)
    print()
    print(table)
    print(f"written: {base}.md and {base}.json")


if __name__ == "__main__":
    main()
