"""Helpers shared by the benchmark scripts (run.py, slow.py)."""

import glob
import os
import shutil
import signal
import socket
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def find_php_fpm():
    if os.environ.get("PHP_FPM_BIN"):
        return os.environ["PHP_FPM_BIN"]
    for name in ["php-fpm"] + sorted(glob.glob("/usr/sbin/php-fpm*"), reverse=True):
        path = shutil.which(name) or (name if os.path.exists(name) else None)
        if path:
            return path
    sys.exit("php-fpm not found: apt-get install php8.2-fpm")


def stop_all(procs, work):
    """Stops the processes we started (by their Popen handle, newest first)
    and removes the work directory."""
    for p in reversed(procs):
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        except Exception:
            p.kill()
            p.wait()
    shutil.rmtree(work, ignore_errors=True)


def write_nginx_conf(work, workers, servers, http_extra="", access_log=False):
    """Writes `work`/nginx.conf: foreground, logs in `work`, `workers`
    worker processes ("auto" or a number), and the given server blocks.
    `access_log`: as Debian's nginx.conf sets up its http block (an access
    log written per request, sendfile, tcp_nopush, gzip), the log in `work`;
    otherwise no access log and nginx's built-in defaults."""
    installed = (f"access_log {work}/nginx-access.log;\n    sendfile on;\n    tcp_nopush on;\n"
                 "    gzip on;" if access_log else "access_log off;")
    with open(f"{work}/nginx.conf", "w") as f:
        f.write(f"""daemon off;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    {installed}
    include /etc/nginx/mime.types;
    {http_extra}
    {''.join(servers)}
}}
""")
