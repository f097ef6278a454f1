#!/usr/bin/env python3
"""Writes the hand-made seed corpus, fuzz/corpus/<target>/, from the inputs
listed here. Run it from anywhere after changing a list; the files are
named by content, so re-running adds nothing that is already there.

The input layouts (leading control bytes) are the fuzz targets' own; see
the doc comment at the top of each fuzz_targets/<target>.rs.
"""

import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# --- FastCGI records, laid out as php-fpm and the gateway write them ----------

BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR, DATA, GET_VALUES, GET_VALUES_RESULT, UNKNOWN = range(1, 12)


def record(rtype, rid, content=b"", padding=None, version=1):
    if padding is None:
        padding = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", version, rtype, rid, len(content), padding, 0) + content + b"\0" * padding


def nv_len(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def pairs(items, wide=False):
    out = b""
    for name, value in items:
        if wide:
            out += struct.pack(">II", len(name) | 0x80000000, len(value) | 0x80000000)
        else:
            out += nv_len(len(name)) + nv_len(len(value))
        out += name + value
    return out


def end_request(rid, app_status=0, protocol_status=0):
    return record(END, rid, struct.pack(">IB3x", app_status, protocol_status))


def begin(rid, role=1, keep=True):
    return record(BEGIN, rid, struct.pack(">HB5x", role, 1 if keep else 0))


PHP_HEAD = b"X-Powered-By: PHP/8.2.28\r\nContent-type: text/html; charset=UTF-8\r\n\r\n"
PAGE = PHP_HEAD + b"<!DOCTYPE html>\n<html><body>Hello</body></html>\n"
WARNING = (b"PHP message: PHP Warning:  Undefined variable $name in /srv/www/index.php on line 3; "
           b"PHP message: PHP Deprecated:  strlen(): Passing null in /srv/www/index.php on line 4")

CGI_PARAMS = [
    (b"SCRIPT_FILENAME", b"/srv/www/index.php"),
    (b"SCRIPT_NAME", b"/index.php"),
    (b"DOCUMENT_ROOT", b"/srv/www"),
    (b"DOCUMENT_URI", b"/index.php"),
    (b"REQUEST_URI", b"/index.php?q=1"),
    (b"QUERY_STRING", b"q=1"),
    (b"REQUEST_METHOD", b"POST"),
    (b"CONTENT_TYPE", b"application/x-www-form-urlencoded"),
    (b"CONTENT_LENGTH", b"7"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"fcgi-gateway"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"53422"),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"SERVER_PORT", b"8080"),
    (b"SERVER_NAME", b"localhost"),
    (b"HTTP_HOST", b"localhost:8080"),
    (b"HTTP_USER_AGENT", b"curl/8.5.0"),
    (b"HTTP_COOKIE", b"a=1; b=" + b"x" * 150),
]


def params_stream(rid, items, cut=None):
    body = pairs(items)
    if cut is None:
        return record(PARAMS, rid, body) + record(PARAMS, rid)
    return record(PARAMS, rid, body[:cut]) + record(PARAMS, rid, body[cut:]) + record(PARAMS, rid)


def fastcgi_decode():
    resp = [
        record(STDOUT, 1, PAGE) + record(STDOUT, 1) + end_request(1),
        record(STDERR, 1, WARNING) + record(STDOUT, 1, PAGE) + record(STDOUT, 1) + record(STDERR, 1) + end_request(1),
        record(STDOUT, 1, b"Status: 500 Internal Server Error\r\n" + PHP_HEAD) + record(STDOUT, 1) + end_request(1, 255),
        record(STDOUT, 1, PHP_HEAD) + record(STDOUT, 1, b"chunk one\n") + record(STDOUT, 1, b"chunk two\n") + record(STDOUT, 1) + end_request(1),
        end_request(1, 0, 2),  # overloaded
        end_request(1, 0, 3),  # unknown role
        record(GET_VALUES_RESULT, 0, pairs([(b"FCGI_MAX_CONNS", b"50"), (b"FCGI_MAX_REQS", b"50"), (b"FCGI_MPXS_CONNS", b"0")])),
        record(GET_VALUES_RESULT, 0, pairs([(b"FCGI_MPXS_CONNS", b"0")], wide=True)),
        record(UNKNOWN, 0, bytes([12]) + b"\0" * 7),
        record(STDOUT, 1, PAGE, padding=255) + end_request(1),
        record(STDOUT, 1, PAGE) + record(STDOUT, 2, b"other request"),
        record(STDOUT, 1, PAGE) + end_request(1) + record(STDOUT, 1, b"after the end"),
        record(STDOUT, 1, PAGE, version=0),
        record(99, 1, b"x"),
        record(BEGIN, 1, b"\0\1\1\0\0\0\0\0"),
        record(END, 1, b"\0\0\0\0"),
        record(STDOUT, 1, PAGE)[:20],
    ]
    req = [
        begin(1) + params_stream(1, CGI_PARAMS) + record(STDIN, 1, b"a=1&b=2") + record(STDIN, 1),
        begin(1) + params_stream(1, CGI_PARAMS, cut=37) + record(STDIN, 1),
        begin(1) + params_stream(1, CGI_PARAMS) + record(STDIN, 1) + begin(1) + params_stream(1, CGI_PARAMS[:3]) + record(STDIN, 1),
        begin(1) + params_stream(1, CGI_PARAMS[:2]) + record(ABORT, 1) + begin(2, keep=False) + record(PARAMS, 2) + record(STDIN, 2),
        record(GET_VALUES, 0, pairs([(b"FCGI_MAX_CONNS", b""), (b"FCGI_MAX_REQS", b""), (b"FCGI_MPXS_CONNS", b"")])),
        begin(1, role=3) + record(PARAMS, 1) + record(STDIN, 1),
        begin(1, role=9) + record(PARAMS, 1),
        begin(1) + record(STDIN, 1),
        begin(1) + begin(2),
        begin(0),
        record(PARAMS, 1, pairs(CGI_PARAMS[:2])),
        begin(1) + record(PARAMS, 1, b"\x05\x80\0\0"),
        begin(1) + record(DATA, 1, b"filter data"),
    ]
    seeds = []
    for stream in resp:
        seeds += [b"\0\0" + stream, b"\0\3" + stream]
    for stream in req:
        seeds += [b"\1\0" + stream, b"\1\5" + stream]
    seeds += [b"\0\1" + resp[1], b"\1\1" + req[1], b"\0\7" + resp[0], b"\1\x86" + req[0]]
    return seeds


def nvpair():
    return [
        pairs(CGI_PARAMS),
        pairs(CGI_PARAMS[:4], wide=True),
        pairs([(b"FCGI_MAX_CONNS", b""), (b"FCGI_MAX_REQS", b""), (b"FCGI_MPXS_CONNS", b"")]),
        pairs([(b"", b""), (b"n" * 127, b"v" * 128)]),
        pairs([(b"HTTP_X_BIN", bytes(range(256)))]),
        b"",
        b"\x01",
        b"\x80\0\0",
        b"\x02\x01a",
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        # Encoding side: a 65 KiB value and a 2 KiB name, so PARAMS spans records.
        b"\x04NAME\xc1v" + b"\x82n\x05value",
        b"\x0fSCRIPT_FILENAME\x12/srv/www/index.php\x00\x00",
    ]


# --- CGI heads as PHP writes them ---------------------------------------------

def cgi_head():
    heads = [
        PAGE,
        b"Status: 404 Not Found\r\n" + PHP_HEAD + b"<h1>Not Found</h1>",
        b"X-Powered-By: PHP/8.2.28\r\nLocation: /login\r\nContent-type: text/html; charset=UTF-8\r\n\r\n",
        b"Status: 301 Moved Permanently\r\nLocation: https://example.test/\r\n\r\n",
        b"Set-Cookie: a=1; path=/\r\nSet-Cookie: b=2; HttpOnly\r\nContent-Type: application/json\r\n\r\n{\"ok\":true}",
        b"X-Accel-Redirect: /protected/file.zip\r\nContent-Disposition: attachment; filename=\"file.zip\"\r\n\r\n",
        b"X-Sendfile: /srv/files/a.bin\r\nX-Accel-Buffering: no\r\n\r\n",
        b"Content-Type: text/plain\nX-A: 1\n\nbody",
        b"Content-Type: text/plain\r\nX-A: 1\n\r\nbody",
        b"Connection: close\nKeep-Alive: timeout=5\nTransfer-Encoding: chunked\nContent-Length: 5\n\nhello",
        b"Status: 418\n\n",
        b"status:599\n\n",
        b"Status: 20x\n\n",
        b"Status: 200OK\n\n",
        b"Status:\n\n",
        b"X-A:\t  spaced out \t\r\nX-B:\r\n\r\n",
        b"X-A: a\n b\n\n",
        b"Bad Name: x\n\n",
        b": x\n\n",
        b"X-A: a\x01b\n\n",
        b"Content-Type text/html\n\n",
        b"\r\nbody",
        b"\n",
        b"Status: 404\r\nX-A: 1\r\n",
        b"X-A: 1\r\nX-B: 2",
        b"X-A: 1\r",
        b"X-Long: " + b"x" * 200 + b"\n\n",
        b"X-Caf\xc3\xa9: \xc3\xa9t\xc3\xa9\n\n",
        b"X-Obs: caf\xe9\r\n\r\n",
    ]
    seeds = []
    for head in heads:
        seeds += [b"\0\0" + head, b"\0\1" + head, b"\0\x05" + head]
    seeds += [b"\x90\0" + heads[3], b"\x88\x02" + b"X-A: 1\n\nbody", b"\x87\0X-A: 1\n\n", b"\x80\0\n"]
    return seeds


# --- Paths ---------------------------------------------------------------------

def route():
    paths = [
        "/", "//", "/.", "/..", "/index.php", "/index.php?x=1", "/a/../b", "/a/./b/../index.php",
        "/%2e%2e/etc/passwd", "/%2e%2e%2f%2e%2e%2fetc/passwd", "/%2E%2E/", "/..%2f..%2fetc", "/%00",
        "/index.php%00.txt", "/a%0d%0aSet-Cookie:%20x=1", "/a%5cb", "/a\\b", "/%c0%ae%c0%ae/",
        "/%", "/%zz", "/%2", "/x.php/y", "/sub/page.php/extra/path?x=1", "/sub/page.php/%2e%2e/a.php",
        "/sub", "/sub?a=b&c", "/sub/", "/sub/.", "/sub/deeper", "/html", "/multi/", "/empty",
        "/empty/", "/d.php", "/d.php/x", "/x.PHP", "/x.php", "/A.PHP", "/a%20b.php", "/a b.php",
        "/info.php", "/alias.php", "/link.php", "/link.php/x", "/escape/notes.txt", "/escape/secret.php",
        "/escape/", "/out.txt", "/outdot.txt", "/source.txt", "/env.txt", "/.env", "/%2eenv",
        "/.git/config", "/.git/", "/.git/hooks/run.php", "/sub/.hidden.php", "/.well-known/x.txt",
        "/.well-known/.hidden", "/.well-known/", "/.well-known/acme.php", "/.well-known/acme.php/x",
        "/...", "/readme.txt", "/readme.txt/", "/README.TXT", "/100%25.txt", "/caf%C3%A9.txt",
        "/caf%c3%a9.txt", "/fw.%EF%BD%90%EF%BD%88%EF%BD%90", "/secret.inc", "/SECRET.INC",
        "/view.PHTML", "/tool.phar", "/uploads/evil.jpg", "/uploads/evil.jpg/x.php",
        "/protected/file.zip", "/protected", "/protected/", "/%70rotected/file.zip",
        "/protected/run.php", "/protectedx/a.txt", "/aliasdir/file.zip", "/aliasdir/run.php",
        "/pub.zip", "/pipe.txt", "/loop", "/loop/x", "/dangling.txt", "/missing", "/missing.php",
        "/missing/x.php/y", "/index.php/", "/index.php/.%2e/", "relative", "", "?only=query",
        "/sub?", "/sub?%0d%0a", "/%E2%80%AE", "/a;b=c", "/a#frag",
    ]
    return [p.encode() for p in paths]


def accel():
    values = [
        "/protected/file.zip", "/protected/file.zip?x=1", "/protected/sub/a.txt", "/protected/.hidden",
        "/protected/run.php", " /protected/file.zip ", "/%70rotected/file.zip", "/protected/",
        "/readme.txt", "/a.php", "/secret.inc", "/pub.zip", "/out.txt", "/outdot.txt", "/env.txt",
        "/aliasdir/file.zip", "/.well-known/x.txt", "/../etc/passwd", "/%2e%2e/etc/passwd",
        "/%00", "/pipe.txt", "/loop", "relative/path", "", "/caf%C3%A9.txt",
        "@/a.bin", "@/sub/b.txt", "@/.private/c.txt", "@/code.php", "@/x.inc", "@/out.txt",
        "@/in.txt", "@/root.txt", "@/open/c.txt", "@/../outside/notes.txt", "@/./a.bin", "@//a.bin",
        "@/sub/../a.bin", "@/", "@", "@/missing", "~/readme.txt", "~/protected/file.zip",
        "^/files/a.bin", "^/outside/notes.txt", "^/root/../files/a.bin", "/etc/passwd",
        "/etc/hostname", "/proc/self/environ", "/dev/null",
    ]
    return [v.encode() for v in values]


# --- Config files ------------------------------------------------------------

BASE = 'upstream = "unix:/run/php/fpm.sock"\nroot = "root"\n'


def config_file():
    files = [
        BASE,
        'root = "root"\n',
        'listen = ["127.0.0.1:8080", "unix:/run/fcgi-gateway.sock"]\nupstream = "unix:/run/php/php8.2-fpm.sock"\n'
        'root = "root"\nfront-controller = "/index.php"\nread-timeout = "30s"\nmax-body-size = "64M"\n\n'
        '[params]\nAPP_ENV = "prod"\n\n[cache-control]\ncss = "max-age=3600"\njs = "max-age=3600"\n'
        'woff2 = "public, max-age=31536000, immutable"\n',
        BASE + 'front-controller = "/index.php"\nphp-only-front-controller = true\nnever-serve-ext = [".INC", "bak"]\n'
        'follow-symlinks-outside-root = true\n\n[cache-control]\ncss = "max-age=3600"\n".JS" = "public, max-age=60"\n',
        BASE + 'max-uri-length = "4k"\nmax-header-size = 2048\nmax-headers = 20\n',
        BASE + 'trusted-proxy = ["10.0.0.0/8", "::1", "unix"]\nreal-ip-header = "forwarded"\n',
        BASE + 'internal-location = ["/protected/", "/private/files"]\nsendfile-dir = "files"\n',
        BASE + 'tls-cert = "tls/cert.pem"\ntls-key = "/abs/key.pem"\nlisten = ["127.0.0.1:1", "http://127.0.0.1:2"]\n',
        BASE + 'listen = ["https://127.0.0.1:8443"]\n',
        BASE + 'admin-listen = "127.0.0.1:9000"\nfpm-ping-path = "/ping"\nfpm-status-path = "/status"\n',
        BASE + 'server-timing = true\naccess-log-format = "json"\ncompress = true\n',
        BASE + 'upstream-pipelining = "40ms"\nworkers = 2\nmax-upstream-conns = 8\nmax-idle-conns = 16\n',
        BASE + 'upstream-pipelining = false\nqueue-length = 0\nacquire-timeout = "1s"\nidle-timeout = "1m"\n',
        BASE + 'index = []\nserver-name = "example.test"\nlog-level = " info,fcgi_gateway=debug "\n',
        BASE + 'connect-timeout = "500ms"\nheader-timeout = "10s"\ngrace-period = "30s"\nmax-connections = 1024\n',
        'root = "root"\nphp-fpm = "/usr/sbin/php-fpm8.2"\nfpm-children = 4\n',
        'upstream = "tcp:127.0.0.1:9000"\nroot = "root"\n',
        'upstream = "tcp:[::1]:9000"\nroot = "root"\n',
        # Rejected ones.
        BASE + 'max-headers = 0\n',
        BASE + 'max-uri-length = "1G"\n',
        BASE + 'internal-location = "protected"\n',
        BASE + 'sendfile-dir = "gateway.toml"\n',
        BASE + 'compress = "yes"\n',
        BASE + 'admin-listen = "nonsense"\n',
        BASE + 'access-log-format = "xml"\n',
        BASE + 'upstream-pipelining = 3\n',
        BASE + 'php-only-front-controller = true\n',
        BASE + 'tls-key = "k.pem"\n',
        BASE + 'tls-cert = ""\ntls-key = "k"\n',
        BASE + 'no-such-key = 1\n',
        BASE + '[params]\n"" = "x"\n',
        BASE + '[cache-control]\n"a.b" = "x"\n',
        BASE + 'index = ["../x"]\n',
        BASE + 'front-controller = "index.php"\n',
        'root = "missing"\n',
        'upstream = "unix:/x"\n',
        'root = "root"\nroot = "root"\n',
        'root = \n',
        'root = "root\n',
        '[params\n',
    ]
    return [f.encode() for f in files]


# --- nginx configs (import-nginx) ---------------------------------------------

CORPUS = os.path.join(HERE, "..", "tests", "nginx-corpus")


def nginx_config():
    """The corpus configs (placeholders left in), and small odd ones."""
    seeds = []
    for base, _, names in sorted(os.walk(CORPUS)):
        for name in sorted(names):
            if name != "README.md":
                with open(os.path.join(base, name), "rb") as f:
                    seeds.append(f.read())
    odd = [
        "server { listen 443 ssl; ssl_certificate a.pem; ssl_certificate_key a.key; server_name a.test; }\n"
        "server { listen 80; server_name a.test; return 301 https://$host$request_uri; }\n",
        "upstream u { server 10.0.0.1:9000 weight=3 max_conns=4; server unix:/s backup; }\n"
        "server { location ~ \\.php$ { fastcgi_pass u; fastcgi_param A \"b c\"; } }\n",
        "server { error_page 404 =200 /x; error_page 500 502 = /e.php; error_page 410 https://e/; }\n",
        "server { location ~* \\.(css|js)$ { expires 1h30m; add_header Cache-Control public; } }\n",
        "server { location = /a { return 302 $scheme://$host${request_uri}; } location /b/ { return 308 /c; } }\n",
        "server { location ~ /\\.(?!well-known).* { deny all; } location ~ (a)\\1 { return 403; } }\n",
        "server { listen [::]:80 default_server; listen [::1]:81 ipv6only=on; listen unix:/tmp/s; }\n",
        "server { add_header 'X \\' y' \"v\\n\\t\" always; client_max_body_size 0; fastcgi_read_timeout 1y; }\n",
        "http { server { location / { location /x { } } } }\n",
        "a \"unclosed\n",
        "server {\n",
        "}\n",
        "x ${a} {b};\n",
    ]
    return seeds + [o.encode() for o in odd]


def main():
    for target, seeds in [
        ("fastcgi_decode", fastcgi_decode()),
        ("nvpair", nvpair()),
        ("cgi_head", cgi_head()),
        ("route", route()),
        ("config_file", config_file()),
        ("accel", accel()),
        ("nginx_config", nginx_config()),
    ]:
        out = os.path.join(HERE, "corpus", target)
        os.makedirs(out, exist_ok=True)
        for seed in seeds:
            name = hashlib.sha1(seed).hexdigest()
            with open(os.path.join(out, name), "wb") as f:
                f.write(seed)
        print(f"{target}: {len(set(seeds))} seeds, largest {max(map(len, seeds))} bytes")


if __name__ == "__main__":
    main()
