//! A real nginx for tests that need another server in front of php-fpm
//! (`doctor` against a misconfigured site). [`Nginx::start`] writes a
//! config into a fresh temp dir around the `server { }` body the test
//! gives, runs nginx in the foreground (`daemon off`) as our child, with
//! its pid file, logs and temp paths in that dir and a free port on
//! 127.0.0.1, and stops it by PID (SIGTERM to the master, which stops its
//! worker; SIGKILL after 5 s). Like php-fpm, it is tied to the test process
//! (`PR_SET_PDEATHSIG`), so a killed test binary takes it along.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::php_fpm::{free_port, spawn_tied_to_test_process};
use super::wait;

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(5);
const PORT_ATTEMPTS: u32 = 5;

pub struct Nginx {
    pub addr: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx with `server_body` (directives inside `server { }`,
    /// after its `listen`). Panics with the error log when nginx is
    /// missing or does not come up: tests that need it fail, never skip.
    pub fn start(server_body: &str) -> Nginx {
        Nginx::start_http(|_dir, addr| {
            let mut lines = format!("server {{\n    listen {addr};\n");
            for line in server_body.lines() {
                let _ = writeln!(lines, "    {line}");
            }
            lines.push_str("}\n");
            lines
        })
    }

    /// Starts nginx with the `http { }` contents `http_body` returns for
    /// nginx's dir (its conf dir: relative includes resolve there) and the
    /// 127.0.0.1 address picked for it; called again with another address
    /// when that one turns out taken. For whole site files (the
    /// `import-nginx` corpus) that name their own `listen`.
    pub fn start_http(http_body: impl Fn(&Path, SocketAddr) -> String) -> Nginx {
        let bin = find_nginx();
        let dir = tempfile::Builder::new()
            .prefix("nginx-test-")
            .tempdir()
            .expect("temp dir for nginx");
        fs::create_dir_all(dir.path().join("tmp")).expect("nginx temp dir");
        // Next to nginx.conf, so `include fastcgi_params;` finds it without
        // depending on where a distribution keeps its own.
        fs::write(dir.path().join("fastcgi_params"), FASTCGI_PARAMS).expect("fastcgi_params");
        let mut last = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let conf = render(dir.path(), &http_body(dir.path(), addr));
            let conf_path = dir.path().join("nginx.conf");
            fs::write(&conf_path, &conf).expect("write nginx.conf");
            let error_log = dir.path().join("error.log");
            let mut cmd = Command::new(&bin);
            // -e: the error log before the config is read, so nothing is
            // written to /var/log/nginx.
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&error_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = spawn_tied_to_test_process(cmd)
                .unwrap_or_else(|e| panic!("could not run {}: {e}", bin.display()));
            let mut exited = None;
            let up = wait::holds_within_blocking(START_TIMEOUT, || {
                exited = child.try_wait().expect("try_wait on nginx");
                exited.is_some()
                    || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            let log = fs::read_to_string(&error_log).unwrap_or_default();
            match exited {
                None if up => {
                    return Nginx {
                        addr,
                        dir,
                        child: Some(child),
                    }
                }
                Some(_) if log.contains("Address already in use") => {
                    last = format!("attempt {attempt}: {addr} in use\n{log}");
                }
                _ => {
                    let mut nginx = Nginx {
                        addr,
                        dir,
                        child: Some(child),
                    };
                    nginx.stop();
                    panic!("nginx did not start ({exited:?}):\n--- nginx.conf ---\n{conf}\n--- error.log ---\n{log}");
                }
            }
        }
        panic!("nginx found no free port in {PORT_ATTEMPTS} attempts; last: {last}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nginx's error log so far, for assertion messages.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// SIGTERM to the master by PID (it stops its worker first), SIGKILL
    /// if it is still there after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, not yet reaped: the PID is its.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let gone =
            wait::holds_within_blocking(STOP_GRACE, || !matches!(child.try_wait(), Ok(None)));
        if !gone {
            eprintln!("nginx master {pid} still runs {STOP_GRACE:?} after SIGTERM; SIGKILL");
            // SAFETY: as above, still not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The CGI variables nginx sends to a FastCGI server, as its usual
/// `fastcgi_params` sets them (SCRIPT_FILENAME is the test's to set).
const FASTCGI_PARAMS: &str = "\
fastcgi_param QUERY_STRING $query_string;
fastcgi_param REQUEST_METHOD $request_method;
fastcgi_param CONTENT_TYPE $content_type;
fastcgi_param CONTENT_LENGTH $content_length;
fastcgi_param SCRIPT_NAME $fastcgi_script_name;
fastcgi_param REQUEST_URI $request_uri;
fastcgi_param DOCUMENT_URI $document_uri;
fastcgi_param DOCUMENT_ROOT $document_root;
fastcgi_param SERVER_PROTOCOL $server_protocol;
fastcgi_param REQUEST_SCHEME $scheme;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
fastcgi_param REMOTE_ADDR $remote_addr;
fastcgi_param REMOTE_PORT $remote_port;
fastcgi_param SERVER_ADDR $server_addr;
fastcgi_param SERVER_PORT $server_port;
fastcgi_param SERVER_NAME $server_name;
fastcgi_param REDIRECT_STATUS 200;
";

/// `NGINX_BIN`, else `nginx` on PATH, else /usr/sbin/nginx.
fn find_nginx() -> PathBuf {
    if let Some(bin) = std::env::var_os("NGINX_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nginx"))
            .find(|p| p.is_file())
    });
    match on_path {
        Some(bin) => bin,
        None if Path::new("/usr/sbin/nginx").is_file() => PathBuf::from("/usr/sbin/nginx"),
        None => panic!(
            "\n\nnginx NOT FOUND: the doctor tests run a real nginx. Install it \
             (`apt-get install nginx`; scripts/test.sh does) or set NGINX_BIN.\n"
        ),
    }
}

fn render(dir: &Path, http_body: &str) -> String {
    let d = dir.display();
    let mut c = String::new();
    // writeln! into a String cannot fail.
    let _ = writeln!(c, "# generated by tests/support/nginx.rs");
    let _ = writeln!(c, "daemon off;");
    let _ = writeln!(c, "worker_processes 1;");
    let _ = writeln!(c, "pid {d}/nginx.pid;");
    let _ = writeln!(c, "error_log {d}/error.log notice;");
    // As root the worker would otherwise run as nobody, who cannot enter
    // the temp dirs (mode 0700) holding the site.
    if unsafe { libc::geteuid() } == 0 {
        let _ = writeln!(c, "user root root;");
    }
    let _ = writeln!(c, "events {{ worker_connections 64; }}");
    let _ = writeln!(c, "http {{");
    let _ = writeln!(c, "    access_log {d}/access.log;");
    for kind in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let _ = writeln!(c, "    {kind}_temp_path {d}/tmp/{kind};");
    }
    let _ = writeln!(
        c,
        "    types {{ text/html html; text/plain txt; text/css css; \
         application/javascript js; image/jpeg jpg; image/png png; }}"
    );
    let _ = writeln!(c, "    default_type application/octet-stream;");
    for line in http_body.lines() {
        let _ = writeln!(c, "    {line}");
    }
    let _ = writeln!(c, "}}");
    c
}
