#!/usr/bin/env python3
"""The benchmark suite: fcgi-gateway vs nginx on the same php-fpm.

One php-fpm master with one pool per (server, socket type) -- pm = static,
4 children each, because a kept-alive idle connection pins its worker and
servers sharing a pool would starve each other. nginx is tuned the way people
tune it (upstream keepalive, fastcgi_keep_conn on). Both run at their defaults
(nginx worker_processes auto as Debian installs it; the gateway with no tuning
flags) unless --workers N sets both to N. wrk drives every cell; cells run
interleaved in rounds so machine noise hits every server alike; the medians
of the rounds are reported.

Recorded per cell: requests/s, p50/p99 latency, failed and non-2xx counts,
the server's CPU microseconds per request (utime+stime of all its processes,
from /proc) and its peak RSS.

    python3 bench/run.py [--rounds 3] [--duration 3] [--scenarios hello,...]
                         [--concurrency 1,32,256] [--out bench/results]

`--scenarios slow` (alone or in the list) also runs bench/slow.py -- bursts of
300 ms pages on a small php-fpm pool -- with the same --rounds and --out.

`--link-delay 0.2ms,1ms` (root) adds a socket kind `tcp+D` per delay: those
pools run in a php-fpm of their own in a network namespace, behind an
emulated link that adds D of round-trip time (D/2 each way), made by
`fcgi-gateway bench-link` (a userspace relay between two tun devices: this
project's kernel has no sch_netem). Both servers reach it over the same link.

Needs php-fpm, nginx, wrk (apt-get install php8.2-fpm nginx wrk) and a
release build (cargo build --release; the script runs it).
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import find_php_fpm, free_port, stop_all, write_nginx_conf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

SCENARIOS = {
    # name: (path, wrk lua script or None, description)
    "hello": ("/hello.php", None, "hello-world PHP"),
    "64k": ("/big.php?size=65536", None, "64 KiB PHP response"),
    "post1m": ("/echo_post.php", "post1m.lua", "1 MiB POST"),
    "front": ("/blog/some/article?page=2", None, "front-controller route"),
    "static4k": ("/static4k.css", None, "4 KiB static file"),
    "static1m": ("/static1m.png", None, "1 MiB static image"),
    # HTTP/2 cleartext with prior knowledge, driven by h2load (one stream per
    # connection at a time, like wrk's one request per connection).
    "hello-h2c": ("/hello.php", "h2load", "hello-world PHP over h2c"),
}


def proc_tree(pid):
    """pid and all its descendants."""
    out = [pid]
    for p in list(out):
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out.extend(kids)
        for k in kids:
            out.extend(proc_tree(k)[1:])
    return sorted(set(out))


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total


def status_numbers(path, fields):
    """The numbers of these fields of a /proc status file (0 when absent or
    gone): memory fields in kB, context switches as counts."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return [0] * len(fields)
    found = [re.search(rf"^{field}:\s+(\d+)", text, re.M) for field in fields]
    return [int(m.group(1)) if m else 0 for m in found]


def switches(pids):
    """Context switches of every thread of pids: (voluntary, involuntary).
    Under load the server's CPU per request follows how often the kernel
    preempts it (docs/benchmarks.md), so each cell records them."""
    vol = invol = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            v, n = status_numbers(f"/proc/{p}/task/{t}/status",
                                  ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"])
            vol, invol = vol + v, invol + n
    return vol, invol


def status_kib(pids, field):
    """Sum of a /proc/PID/status memory field (VmRSS, VmHWM) over pids."""
    return sum(status_numbers(f"/proc/{p}/status", [field])[0] for p in pids)


def rss_peak_kib(pids):
    return status_kib(pids, "VmHWM")


def rss_now_kib(pids):
    return status_kib(pids, "VmRSS")


def read_http_response(sock):
    """Reads one HTTP/1.1 response with Content-Length or chunked body; returns the status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed before the response head")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        need = int(m.group(1))
        while len(body) < need:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("connection closed mid-body")
            body += chunk
    else:  # chunked: read until the last chunk
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("connection closed mid-body")
            body += chunk
    return status


def hold_idle_clients(port, count, path):
    """Opens `count` keep-alive connections, one request on each, and keeps
    them open. Returns (sockets, failures)."""
    socks, failures = [], 0
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            if read_http_response(s) != 200:
                failures += 1
            socks.append(s)
        except OSError:
            failures += 1
    return socks, failures


def parse_h2load(text):
    """h2load reports req/s, mean latency and counts, no percentiles."""
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", text)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text)

    def dur(v):
        m = re.match(r"([\d.]+)(us|ms|s)", v or "")
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else None

    done = int(counts.group(2)) if counts else 0
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": dur(mean.group(1)) if mean else None,  # h2load's mean, not a median
        "p99_ms": None,
        "requests": done,
        "non2xx": (int(status.group(2)) + int(status.group(3)) + int(status.group(4))) if status else 0,
        "socket_errors": (int(counts.group(4)) + int(counts.group(5))) if counts else 0,
    }


def parse_wrk(text):
    def dur(s):
        m = re.match(r"([\d.]+)(us|ms|s|m)", s)
        if not m:
            return None
        v, u = float(m.group(1)), m.group(2)
        return v * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": dur(p50.group(1)) if p50 else None,
        "p99_ms": dur(p99.group(1)) if p99 else None,
        "requests": int(total.group(1)) if total else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3, help="seconds per cell")
    ap.add_argument("--scenarios", default="hello,64k,post1m,front,static4k,hello-h2c")
    ap.add_argument("--concurrency", default="1,32,256")
    ap.add_argument("--sockets", default="unix,tcp")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--workers", default="auto",
                    help="nginx worker_processes and the gateway's --workers alike; 'auto' "
                         "(the default) is both at their defaults: nginx worker_processes auto "
                         "as Debian installs it, the gateway with no --workers (the CPU count)")
    ap.add_argument("--idle-clients", type=int, default=1000,
                    help="after the cells, hold this many idle keep-alive clients on each "
                         "server and record its RSS (0 skips)")
    ap.add_argument("--logs", choices=["installed", "off"], default="installed",
                    help="installed (the default): both log every request to a file as they "
                         "come -- nginx with Debian's http settings (access_log, sendfile, "
                         "tcp_nopush, gzip), the gateway's access lines on stderr; off: neither "
                         "logs (nginx access_log off, gateway --log-level warn)")
    ap.add_argument("--servers", default="nginx,gateway",
                    help="server kinds, compared against the first: nginx (upstream keepalive), "
                         "nginx-nokeep (a new php-fpm connection per request), gateway, "
                         "gateway-noidle (--max-idle-conns 0), gateway-base (--base-bin)")
    ap.add_argument("--link-delay", default="",
                    help="comma-separated round-trip delays, e.g. 0.2ms,1ms: for each, socket kind "
                         "tcp+D whose php-fpm pools run in a network namespace behind an emulated "
                         "link with that delay (fcgi-gateway bench-link; needs root)")
    ap.add_argument("--base-bin",
                    help="another fcgi-gateway binary (an earlier commit's release build), run as "
                         "server kind gateway-base with the same flags: an A/B in one run")
    args = ap.parse_args()
    scenarios = args.scenarios.split(",")
    if "slow" in scenarios:  # its own script: bursts, not wrk; see bench/slow.py
        import slow
        slow.main(["--rounds", str(args.rounds), "--out", args.out])
        scenarios = [s for s in scenarios if s != "slow"]
        if not scenarios:
            return
    concurrency = [int(c) for c in args.concurrency.split(",")]
    delays = [d.strip() for d in args.link_delay.split(",") if d.strip()]
    if delays and os.geteuid() != 0:
        sys.exit("--link-delay needs root (network namespaces and tun devices)")
    sockets = args.sockets.split(",") + [f"tcp+{d}" for d in delays]
    kinds = args.servers.split(",")
    for k in kinds:
        if k not in ("nginx", "nginx-nokeep", "gateway", "gateway-noidle", "gateway-base"):
            sys.exit(f"unknown server kind {k}")
        if k == "gateway-base" and not (args.base_bin and os.access(args.base_bin, os.X_OK)):
            sys.exit("gateway-base needs --base-bin PATH to an fcgi-gateway binary")
    tools = ["nginx", "wrk"] + (["h2load"] if any(SCENARIOS[s][1] == "h2load" for s in scenarios) else [])
    for tool in tools:
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            package = "nghttp2-client" if tool == "h2load" else tool
            sys.exit(f"{tool} not found: apt-get install {package}")

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    gateway_bin = os.path.join(ROOT, "target", "release", "fcgi-gateway")
    work = tempfile.mkdtemp(prefix="fcgi-bench.")
    os.chmod(work, 0o755)  # nginx workers run unprivileged and must reach the sockets
    docroot = os.path.join(work, "www")
    shutil.copytree(os.path.join(ROOT, "fixtures", "php"), docroot)
    with open(os.path.join(docroot, "static4k.css"), "w") as f:
        f.write(("body { margin: 0; padding: 0; color: #333; }\n" * 100)[:4096])
    with open(os.path.join(docroot, "static1m.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + os.urandom(1024 * 1024 - 8))
    with open(os.path.join(work, "post1m.lua"), "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = string.rep("x", 1048576)\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    os.chmod(docroot, 0o755)

    procs = []
    links = []  # the bench-link processes, for their relay stats

    def start(cmd, log=None, **kw):
        out = open(log, "ab") if log else subprocess.DEVNULL
        # Each process in a session of its own, as systemd starts a service
        # and nginx's own daemonizing does (php-fpm calls setsid itself):
        # with autogroup scheduling (Debian's default) a session shares one
        # CPU share among its threads, so a server left in ours would share
        # it with wrk and be paced by how much CPU it needs. Measured here
        # (hello and front at c=32/256): the gateway's req/s 1.00-1.69x
        # nginx's in our session against 1.28-1.87x in its own; nginx's
        # unchanged.
        p = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True, **kw)
        if log:
            out.close()
        procs.append(p)
        return p

    try:
        as_root = os.geteuid() == 0
        user = "user = root\ngroup = root\n" if as_root else ""
        ports = {}
        conf = [f"[global]\npid = {work}/fpm.pid\nerror_log = {work}/fpm.log\ndaemonize = no\n"]
        # tcp+D: a php-fpm per delay, in its namespace, listening on every
        # address there (only the link reaches in); its address is known
        # once the link is up.
        link_conf = {d: [f"[global]\npid = {work}/fpm-{d}.pid\nerror_log = {work}/fpm-{d}.log\n"
                         "daemonize = no\n"] for d in delays}
        link_port = {}
        upstream = {}
        for server in kinds:
            for sock in sockets:
                name = f"{server}-{sock}"
                if sock.startswith("tcp+"):
                    link_port[name] = 9001 + len(link_port)
                    link_conf[sock[4:]].append(
                        f"[{name}]\n{user}listen = 0.0.0.0:{link_port[name]}\n"
                        "pm = static\npm.max_children = 4\n"
                        "php_admin_value[post_max_size] = 0\n")
                    continue
                if sock == "unix":
                    listen = f"{work}/{name}.sock"
                    upstream[name] = listen
                else:
                    port = free_port()
                    listen = f"127.0.0.1:{port}"
                    upstream[name] = listen
                conf.append(f"[{name}]\n{user}listen = {listen}\nlisten.mode = 0666\n"
                            "pm = static\npm.max_children = 4\n"
                            "php_admin_value[post_max_size] = 0\n")
        with open(f"{work}/fpm.conf", "w") as f:
            f.write("\n".join(conf))
        fpm_cmd = [find_php_fpm(), "-F", "-y", f"{work}/fpm.conf"] + (["-R"] if as_root else [])
        start(fpm_cmd)
        for d in delays:
            with open(f"{work}/fpm-{d}.conf", "w") as f:
                f.write("\n".join(link_conf[d]))
            cmd = [gateway_bin, "bench-link", "--delay", d, "--", find_php_fpm(), "-F", "-y",
                   f"{work}/fpm-{d}.conf", "-R"]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(p)
            links.append(p)
            first = p.stdout.readline().split()  # link <ours> <theirs> <namespace>
            if len(first) != 4 or first[0] != "link":
                sys.exit(f"fcgi-gateway bench-link --delay {d} did not come up")
            for name, port in link_port.items():
                if name.endswith(f"-tcp+{d}"):
                    upstream[name] = f"{first[2]}:{port}"

        servers = {}
        # nginx serves h2c on a port of its own; the gateway on the same one.
        h2_ports = {}
        nginx_servers = []
        # Idle connections nginx keeps per worker: together no more than the
        # pool's 4 children. Each kept-alive connection pins a php-fpm worker;
        # with 4 per worker, one nginx worker's idle connections held all of
        # php-fpm and the other's requests waited in its backlog (whole cells
        # with no answer). A careful operator sizes it so. nginx's "auto" counts
        # the CPUs it may run on, as sched_getaffinity does.
        nginx_workers = len(os.sched_getaffinity(0)) if args.workers == "auto" else int(args.workers)
        keepalive_per_worker = max(1, 4 // max(1, nginx_workers))
        for kind in [k for k in kinds if k.startswith("nginx")]:
            keep = kind == "nginx"
            for sock in sockets:
                port = free_port()
                h2_port = free_port()
                name = f"{kind}-{sock}"
                up = upstream[name]
                target = f"unix:{up}" if sock == "unix" else up
                ident = re.sub(r"[^A-Za-z0-9_]", "_", name)  # tcp+0.2ms too
                keepalive = f"keepalive {keepalive_per_worker};" if keep else ""
                keep_conn = "fastcgi_keep_conn on;" if keep else ""
                nginx_servers.append(f"""
    upstream {ident} {{ server {target}; {keepalive} }}
    server {{
        listen 127.0.0.1:{port}; listen 127.0.0.1:{h2_port} http2; root {docroot};
        location / {{ try_files $uri $uri/ /index.php?$query_string; }}
        location ~ \\.php$ {{
            try_files $fastcgi_script_name =404;
            include /etc/nginx/fastcgi.conf;
            {keep_conn} fastcgi_pass {ident};
            client_max_body_size 16m;
        }}
    }}""")
                servers[name] = port
                h2_ports[name] = h2_port
        write_nginx_conf(work, args.workers, nginx_servers, "client_body_buffer_size 1m;",
                         access_log=args.logs == "installed")
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx = start([nginx_bin, "-c", f"{work}/nginx.conf", "-e", f"{work}/nginx-error.log"])
        gateways = {}
        for kind in [k for k in kinds if k.startswith("gateway")]:
            for sock in sockets:
                port = free_port()
                name = f"{kind}-{sock}"
                up = upstream[name]
                addr = f"unix:{up}" if sock == "unix" else f"tcp:{up}"  # tcp+D too
                extra = ["--max-idle-conns", "0"] if kind == "gateway-noidle" else []
                binary = args.base_bin if kind == "gateway-base" else gateway_bin
                gateways[name] = start([
                    binary, "serve", "--listen", f"127.0.0.1:{port}", "--upstream", addr,
                    "--root", docroot, "--front-controller", "/index.php",
                    ] + ([] if args.workers == "auto" else ["--workers", str(args.workers)])
                    + (["--log-level", "warn"] if args.logs == "off" else []) + extra,
                    # Its access lines (stderr) to a file, as nginx writes its own.
                    log=f"{work}/{name}.log" if args.logs == "installed" else None)
                servers[name] = port
                h2_ports[name] = port

        for name, port in servers.items():
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.php", timeout=1).read()
                    break
                except Exception:
                    time.sleep(0.1)
            else:
                sys.exit(f"{name} did not come up")

        def pids_of(name):
            p = nginx if name.startswith("nginx") else gateways[name]
            return proc_tree(p.pid)

        # First, on servers fresh from start: the peak RSS is then the idle
        # clients' own, not left over from the load cells.
        idle = {}
        if args.idle_clients:
            try:
                import resource
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                want = min(hard, args.idle_clients + 256)
                if soft < want:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            except (ImportError, ValueError, OSError):
                pass
            for name in servers:
                pids = pids_of(name)
                before = rss_now_kib(pids)
                socks, failures = hold_idle_clients(servers[name], args.idle_clients, "/hello.php")
                time.sleep(1)
                idle[name] = {"clients": len(socks), "failed": failures,
                              "rss_before_kib": before, "rss_held_kib": rss_now_kib(pids),
                              "rss_peak_kib": rss_peak_kib(pids)}
                for s in socks:
                    s.close()
                print(f"idle {name:13} {len(socks)} clients held, {failures} failed, "
                      f"RSS {before} -> {idle[name]['rss_held_kib']} KiB "
                      f"(peak {idle[name]['rss_peak_kib']} KiB)", flush=True)
        cells = [(sc, c, sock) for sc in scenarios for c in concurrency for sock in sockets]
        results = {}
        for r in range(args.rounds):
            for sc, c, sock in cells:
                path, lua, _ = SCENARIOS[sc]
                for server in kinds:
                    name = f"{server}-{sock}"
                    pids = pids_of(name)
                    if lua == "h2load":
                        cmd = ["h2load", f"-t{min(2, c)}", f"-c{c}", "-m1", f"-D{args.duration}",
                               f"http://127.0.0.1:{h2_ports[name]}{path}"]
                    else:
                        cmd = ["wrk", f"-t{min(2, c)}", f"-c{c}", f"-d{args.duration}s", "--latency"]
                        if lua:
                            cmd += ["-s", f"{work}/{lua}"]
                        cmd.append(f"http://127.0.0.1:{servers[name]}{path}")
                    before, switched_before = cpu_ticks(pids), switches(pids)
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
                    after, switched_after = cpu_ticks(pids), switches(pids)
                    m = parse_h2load(out) if lua == "h2load" else parse_wrk(out)
                    m["cpu_us_per_req"] = ((after - before) / CLK_TCK * 1e6 / m["requests"]) if m["requests"] else None
                    # Voluntary (it waited) and involuntary (preempted) switches per request.
                    m["switches_per_req"] = [round((a - b) / m["requests"], 3) for a, b in
                                             zip(switched_after, switched_before)] if m["requests"] else None
                    m["rss_peak_kib"] = rss_peak_kib(pids)
                    results.setdefault((sc, c, sock, server), []).append(m)
                    print(f"round {r + 1} {sc:9} c={c:<4} {name:13} {m['rps']:10.0f} req/s "
                          f"p99 {m['p99_ms']} ms  cpu/req {m['cpu_us_per_req'] and round(m['cpu_us_per_req'], 1)} us  "
                          f"switches/req {m['switches_per_req']}  "
                          f"errors {m['non2xx'] + m['socket_errors']}", flush=True)
    finally:
        stop_all(procs, work)
    # After SIGTERM each bench-link printed what its relay did.
    link_stats = []
    for p in links:
        for line in p.stdout.read().splitlines():
            if line.startswith("stats "):
                link_stats.append(json.loads(line[6:]))

    def med(vals):
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}"
    base_kind = kinds[0]
    rows = []
    def paired(runs, base_runs, key):
        """The ratio to the base server round by round (the rounds are
        interleaved, so each pair ran back to back): how much of a median
        ratio is the machine's noise."""
        out = []
        for x, b in zip(runs, base_runs):
            if x[key] is not None and b[key]:
                out.append(x[key] / b[key])
        return out

    for sc, c, sock in cells:
        base_runs = results[(sc, c, sock, base_kind)]
        base_rps = med([x["rps"] for x in base_runs])
        for server in kinds:
            runs = results[(sc, c, sock, server)]
            row = {"scenario": sc, "concurrency": c, "socket": sock, "server": server}
            row.update({k: med([x[k] for x in runs]) for k in runs[0] if k != "switches_per_req"})
            # Each kind of switch on its own median.
            row["switches_per_req"] = [med([x["switches_per_req"][i] for x in runs if x["switches_per_req"]])
                                       for i in range(2)]
            row["failed_total"] = sum(x["non2xx"] + x["socket_errors"] for x in runs)
            row["rps_ratio_vs_" + base_kind] = row["rps"] / base_rps if base_rps else None
            row["rps_ratio_per_round"] = paired(runs, base_runs, "rps")
            row["cpu_ratio_per_round"] = paired(runs, base_runs, "cpu_us_per_req")
            row["per_round"] = runs
            rows.append(row)

    os.makedirs(args.out, exist_ok=True)
    doc = {"commit": commit, "date": stamp, "machine": machine, "rounds": args.rounds,
           "duration_s": args.duration, "servers": kinds, "rows": rows, "idle": idle,
           "base_bin": args.base_bin, "workers": args.workers, "links": link_stats,
           "logs": args.logs}
    suffix = (("" if args.workers == "auto" else f"-w{args.workers}") + ("-ab" if args.base_bin else "")
              + ("-quiet" if args.logs == "off" else "")
              + ("-link" if delays else ""))
    base = os.path.join(args.out, f"{stamp[:10]}-{commit}{suffix}")
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=2)

    def fmt(v, nd=0):
        return "-" if v is None else f"{v:.{nd}f}"

    def spread(vals):
        return "-" if not vals else f"{min(vals):.2f}–{max(vals):.2f}"

    lines = [f"# fcgi-gateway benchmark, commit {commit}, {stamp}", "",
             f"Machine: {machine}. One php-fpm, a pool per server and socket (static, 4 children); "
             f"wrk {args.duration}s per cell; median of {args.rounds} interleaved rounds; "
             f"'per round': the lowest and highest of the round-by-round ratios to {base_kind} "
             f"(each pair ran back to back), a gauge of the machine's noise; 'cpu vs {base_kind}': "
             f"the median of those ratios. "
             f"CPU = the server's own CPU per request (all its processes); the JSON also has its "
             f"voluntary and involuntary context switches per request (switches_per_req). "
             f"Each server runs in a session of its own, as systemd starts a service. "
             + (f"Both servers at their defaults (nginx worker_processes auto, the gateway with no "
                f"tuning flags: --workers = the CPU count, its pool sized by what php-fpm accepts). "
                if args.workers == "auto" else
                f"Both servers run {args.workers} worker(s) (nginx worker_processes, gateway --workers), "
                f"otherwise at their defaults. ") +
             ("Logs as installed: nginx with Debian's http settings (access_log to a file, "
              "sendfile, tcp_nopush, gzip), the gateway's access lines (stderr) to a file. "
              if args.logs == "installed" else
              "Logs off: nginx access_log off, the gateway --log-level warn. ") +
             f"nginx: upstream keepalive {keepalive_per_worker} per worker (4 children ÷ its workers) "
             f"+ fastcgi_keep_conn on, and for post1m client_max_body_size 16m and "
             f"client_body_buffer_size 1m (the upload held in memory, not written to a temp file: "
             f"a setting in nginx's favour); nginx-nokeep: a connection per request; "
             f"gateway-noidle: plus --max-idle-conns 0. "
             + (f"gateway-base: {args.base_bin}, same flags. " if args.base_bin else "") +
             f"hello-h2c runs h2load over HTTP/2 cleartext (prior knowledge): its p50 column is "
             f"h2load's mean, and it reports no p99. "
             + ("tcp+D: php-fpm in a network namespace behind an emulated link adding D of "
                "round-trip time (D/2 each way; fcgi-gateway bench-link, a userspace relay "
                "between two tun devices)" + "".join(
                    f"; {l['label']}: packets held {l['held_ms']['p50']:.3f} ms one way "
                    f"(p50), {l['held_ms']['p99']:.3f} ms (p99)" for l in link_stats) + "."
                if delays else ""), "",
             f"| scenario | c | socket | server | req/s | vs {base_kind} | vs {base_kind} per round "
             f"| p50 ms | p99 ms | cpu µs/req | cpu vs {base_kind} | cpu vs {base_kind} per round "
             f"| failed | peak RSS KiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['concurrency']} | {row['socket']} | {row['server']} | {fmt(row['rps'])} "
            f"| {fmt(row['rps_ratio_vs_' + base_kind], 2)} | {spread(row['rps_ratio_per_round'])} "
            f"| {fmt(row['p50_ms'], 2)} | {fmt(row['p99_ms'], 2)} "
            f"| {fmt(row['cpu_us_per_req'], 1)} | {fmt(med(row['cpu_ratio_per_round']), 2)} "
            f"| {spread(row['cpu_ratio_per_round'])} "
            f"| {row['failed_total']} | {fmt(row['rss_peak_kib'])} |")
    if idle:
        lines += ["", f"Idle keep-alive clients: {args.idle_clients} connections opened before the cells, "
                  "on servers fresh from start, one GET /hello.php each, then held open "
                  "(RSS of all the server's processes; peak = VmHWM so far).", "",
                  "| server | clients held | failed | RSS before KiB | RSS held KiB | peak RSS KiB |",
                  "|---|---|---|---|---|---|"]
        for name, v in idle.items():
            lines.append(f"| {name} | {v['clients']} | {v['failed']} | {v['rss_before_kib']} "
                         f"| {v['rss_held_kib']} | {v['rss_peak_kib']} |")
    table = "\n".join(lines) + "\n"
    with open(base + ".md", "w") as f:
        f.write(table)
    if not suffix:  # the headline: both at their defaults, no A/B
        shutil.copyfile(base + ".md", os.path.join(args.out, "latest.md"))
    print()
    print(table)
    print(f"written: {base}.md and {base}.json")


if __name__ == "__main__":
    main()
