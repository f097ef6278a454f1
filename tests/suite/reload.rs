//! SIGHUP reloads the config file (flags still win) without a failed
//! request; a bad file is refused and the old config keeps serving. Sockets
//! handed over by systemd are in `socket_activation`. All through the real
//! binary, its log read as it runs (NO_COLOR keeps it plain).

mod socket_activation;

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::gateway::{self, KeptAlive};
use support::php_fpm::{fixtures_dir, PhpFpm};
use support::wait;

/// How long a socket file or a log line may take to appear.
const WAIT: Duration = Duration::from_secs(20);
/// How long the load clients may take to collect their answers.
const LOAD_WAIT: Duration = Duration::from_secs(30);

/// The gateway binary running as a child, with its log collected.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `log` until the pipe closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fcgi-gateway");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            child,
            log,
            reader: Some(reader),
        }
    }

    fn gateway(args: &[&str]) -> Proc {
        Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_fcgi-gateway")).args(support::with_test_workers(args)),
        )
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the `n`th line (counting from 1) containing `needle` is
    /// logged; returns it.
    async fn wait_log(&self, needle: &str, n: usize) -> String {
        let nth = || {
            self.lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
        };
        assert!(
            wait::holds_within(WAIT, || nth().is_some()).await,
            "no {n}. log line with {needle:?}; log:\n{}",
            self.lines().join("\n")
        );
        nth().expect("found above")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) takes two integers and touches none of our memory; the
        // PID is our own child, not yet waited for, so it names no other process.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.child.wait().unwrap().code()
    }

    /// SIGTERM, then the exit code and the whole log, read to its end
    /// (for a gateway that starts no process sharing its stderr).
    fn stop_with_log(mut self) -> (Option<i32>, Vec<String>) {
        self.signal(libc::SIGTERM);
        let code = self.child.wait().unwrap().code();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the log reader does not panic");
        }
        (code, self.lines())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failed assertion must not leave the gateway running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Two document roots, `a` and `b`, whose `who.php` say which they are
/// (and SERVER_NAME), `a/slow.php`, and a config file next to them.
struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(tmp.path()).unwrap();
        for root in ["a", "b"] {
            std::fs::create_dir(path.join(root)).unwrap();
            std::fs::write(
                path.join(root).join("who.php"),
                format!("<?php echo 'root-{root} ', $_SERVER['SERVER_NAME'];\n"),
            )
            .unwrap();
        }
        // Only in `a`: a request that began there must finish there. The
        // fixture, but first it leaves `a/slow.began` behind (`slow_began`).
        let slow = std::fs::read_to_string(fixtures_dir().join("slow.php")).unwrap();
        let marked = slow.replacen("<?php\n", "<?php\ntouch(__DIR__ . '/slow.began');\n", 1);
        assert_ne!(marked, slow, "fixtures/php/slow.php starts with <?php");
        std::fs::write(path.join("a/slow.php"), marked).unwrap();
        Dir { _tmp: tmp, path }
    }

    /// Whether a request for `a/slow.php` has begun running in php-fpm.
    fn slow_began(&self) -> bool {
        self.path.join("a/slow.began").exists()
    }

    fn config(&self) -> PathBuf {
        self.path.join("gw.toml")
    }

    fn sock(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn listen(&self, name: &str) -> String {
        format!("unix:{}", self.sock(name).display())
    }

    /// Replaces the config file (written aside and renamed, as editors do).
    fn write_config(&self, text: &str) {
        let tmp = self.path.join("gw.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.config()).unwrap();
    }
}

/// An HTTP/1.1 connection over a unix socket, kept alive across requests.
async fn connect(sock: &Path) -> Result<KeptAlive, String> {
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| format!("connect {}: {e}", sock.display()))?;
    gateway::keep_alive(stream).await
}

async fn get_on(sender: &mut KeptAlive, path: &str) -> Result<(u16, String), String> {
    gateway::get_on(sender, "reload.test", path).await
}

/// One request on a fresh connection.
async fn get(sock: &Path, path: &str) -> Result<(u16, String), String> {
    get_on(&mut connect(sock).await?, path).await
}

/// What the load clients saw.
#[derive(Default)]
struct Tally {
    ok_a: AtomicUsize,
    ok_b: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, got: Result<(u16, String), String>) {
        match got {
            Ok((200, body)) if body.starts_with("root-a cli-name") => {
                self.ok_a.fetch_add(1, Ordering::Relaxed);
            }
            Ok((200, body)) if body.starts_with("root-b cli-name") => {
                self.ok_b.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => self
                .failures
                .lock()
                .unwrap()
                .push(format!("{status} {body}")),
            Err(e) => self.failures.lock().unwrap().push(e),
        }
    }
}

/// Requests `/who.php` in a loop until `stop`: over one kept-alive
/// connection (a dropped connection is a failure) or a fresh one each time.
async fn load(sock: PathBuf, keep_alive: bool, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut kept = if keep_alive {
        match connect(&sock).await {
            Ok(s) => Some(s),
            Err(e) => return tally.record(Err(e)),
        }
    } else {
        None
    };
    while !stop.load(Ordering::Relaxed) {
        let got = match kept.as_mut() {
            Some(sender) => get_on(sender, "/who.php").await,
            None => get(&sock, "/who.php").await,
        };
        let failed = got.is_err();
        tally.record(got);
        if failed && keep_alive {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_root_upstream_and_listeners_without_a_failed_request() {
    let fpm = PhpFpm::start();
    let dir = Dir::new();
    let (one, two) = (dir.sock("one.sock"), dir.sock("two.sock"));
    // A relative root is next to the file; the flag must keep winning over
    // the file's server-name after the reload, as at start.
    dir.write_config(&format!(
        "listen = [\"{}\"]\nupstream = \"unix:{}\"\nroot = \"a\"\nserver-name = \"file-name\"\n",
        dir.listen("one.sock"),
        fpm.unix_socket.display()
    ));
    let gw = Proc::gateway(&[
        "serve",
        "--config",
        dir.config().to_str().unwrap(),
        "--server-name",
        "cli-name",
        "--max-upstream-conns",
        "4",
    ]);
    wait::socket_listens(&one, WAIT).await;
    assert_eq!(
        get(&one, "/who.php").await,
        Ok((200, "root-a cli-name".to_owned()))
    );

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = [true, true, false, false]
        .into_iter()
        .map(|keep_alive| tokio::spawn(load(one.clone(), keep_alive, stop.clone(), tally.clone())))
        .collect();
    wait::until("20 answers from root a", LOAD_WAIT, || {
        tally.ok_a.load(Ordering::Relaxed) >= 20
    })
    .await;
    // In flight across the reload: finishes on the old root and pool.
    let slow = tokio::spawn({
        let one = one.clone();
        async move { get(&one, "/slow.php?ms=800").await }
    });
    wait::until("the slow request to run in php-fpm", WAIT, || {
        dir.slow_began()
    })
    .await;

    // New root, front controller, upstream (tcp: a new pool), one more listener.
    dir.write_config(&format!(
        "listen = [\"{}\", \"{}\"]\nupstream = \"tcp:{}\"\nroot = \"b\"\nserver-name = \"file-name\"\nfront-controller = \"/who.php\"\n",
        dir.listen("one.sock"),
        dir.listen("two.sock"),
        fpm.tcp_addr
    ));
    gw.signal(libc::SIGHUP);
    let reloaded = gw.wait_log("config reloaded", 1).await;
    assert!(reloaded.contains("upstream_pool=\"new\""), "{reloaded}");
    assert!(reloaded.contains("listeners_added=1"), "{reloaded}");
    for key in ["listen", "upstream", "root", "front-controller"] {
        assert!(
            reloaded.contains(key),
            "{key} not among the changed: {reloaded}"
        );
    }

    let seen_b = tally.ok_b.load(Ordering::Relaxed);
    wait::until("40 more answers from root b", LOAD_WAIT, || {
        tally.ok_b.load(Ordering::Relaxed) >= seen_b + 40
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "failed during the reload: {failures:?}"
    );
    assert_eq!(
        slow.await.unwrap(),
        Ok((200, "slept 800".to_owned())),
        "the request in flight finishes on the old state"
    );
    // The added listener, and the new front controller on both.
    assert_eq!(
        get(&two, "/no/such/page").await,
        Ok((200, "root-b cli-name".to_owned()))
    );
    assert_eq!(
        get(&one, "/no/such/page").await,
        Ok((200, "root-b cli-name".to_owned()))
    );

    // Dropping an address stops it (its file goes); the other one stays.
    dir.write_config(&format!(
        "listen = [\"{}\"]\nupstream = \"tcp:{}\"\nroot = \"b\"\n",
        dir.listen("two.sock"),
        fpm.tcp_addr
    ));
    gw.signal(libc::SIGHUP);
    let reloaded = gw.wait_log("config reloaded", 2).await;
    assert!(reloaded.contains("listeners_removed=1"), "{reloaded}");
    assert!(reloaded.contains("upstream_pool=\"kept\""), "{reloaded}");
    assert!(!one.exists(), "the removed listener's socket file is gone");
    assert!(get(&one, "/who.php").await.is_err());
    assert_eq!(
        get(&two, "/who.php").await,
        Ok((200, "root-b cli-name".to_owned()))
    );
    assert_eq!(gw.stop(), Some(0));
    assert!(!two.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_and_the_running_one_keeps_serving() {
    let fpm = support::shared_fpm();
    let dir = Dir::new();
    let one = dir.sock("one.sock");
    let base = format!(
        "listen = [\"{}\"]\nupstream = \"unix:{}\"\n",
        dir.listen("one.sock"),
        fpm.unix_socket.display()
    );
    dir.write_config(&format!("{base}root = \"a\"\n"));
    let gw = Proc::gateway(&[
        "serve",
        "--config",
        dir.config().to_str().unwrap(),
        "--server-name",
        "cli-name",
    ]);
    wait::socket_listens(&one, WAIT).await;
    // Kept alive across every refused reload.
    let mut kept = connect(&one).await.unwrap();

    let cases: Vec<(String, &str)> = vec![
        (format!("{base}root = \"b\"\nlisen = \"x\"\n"), "`lisen`"),
        (
            format!("{base}root = \"b\"\nread-timeout = \"soon\"\n"),
            "`read-timeout`",
        ),
        (format!("{base}root = \"no-such-dir\"\n"), "no-such-dir"),
        (format!("{base}root = \"b\"\nlisten = [\n"), "TOML syntax"),
        // Binding fails after the file was read: nothing of it may apply.
        (
            format!(
                "listen = [\"{}\", \"unix:/no/such/dir/gw.sock\"]\nupstream = \"unix:{}\"\nroot = \"b\"\n",
                dir.listen("one.sock"),
                fpm.unix_socket.display()
            ),
            "/no/such/dir/gw.sock",
        ),
    ];
    for (n, (text, culprit)) in cases.iter().enumerate() {
        dir.write_config(text);
        gw.signal(libc::SIGHUP);
        let line = gw.wait_log("rejected", n + 1).await;
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains(culprit), "does not name {culprit}: {line}");
        assert!(line.contains("gw.toml"), "does not name the file: {line}");
        assert_eq!(
            get_on(&mut kept, "/who.php").await,
            Ok((200, "root-a cli-name".to_owned())),
            "after {culprit}"
        );
        assert_eq!(
            get(&one, "/who.php").await,
            Ok((200, "root-a cli-name".to_owned()))
        );
    }
    let errors = gw.lines().iter().filter(|l| l.contains("ERROR")).count();
    assert_eq!(errors, cases.len(), "one error line per refused reload");

    // A setting that needs a restart keeps its value; the rest applies.
    dir.write_config(&format!(
        "{base}root = \"b\"\nadmin-listen = \"{}\"\n",
        dir.listen("admin.sock")
    ));
    gw.signal(libc::SIGHUP);
    gw.wait_log("config reloaded", 1).await;
    let warning = gw.wait_log("needs a restart", 1).await;
    assert!(warning.contains("admin-listen"), "{warning}");
    assert!(!dir.sock("admin.sock").exists());
    assert_eq!(
        get_on(&mut kept, "/who.php").await,
        Ok((200, "root-b cli-name".to_owned()))
    );
    assert_eq!(gw.stop(), Some(0));
}

/// A listener a reload removes tells its open connections to finish the
/// request in flight and close; SIGTERM then still waits for those
/// requests, though their listener is gone, before the drain is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_listeners_connections_drain_and_sigterm_waits_for_them() {
    let fpm = PhpFpm::start();
    let dir = Dir::new();
    let one = dir.sock("one.sock");
    let config = |listen: &[&str]| {
        let listen: Vec<String> = listen
            .iter()
            .map(|s| format!("\"{}\"", dir.listen(s)))
            .collect();
        format!(
            "listen = [{}]\nupstream = \"unix:{}\"\nroot = \"a\"\n",
            listen.join(", "),
            fpm.unix_socket.display()
        )
    };
    dir.write_config(&config(&["one.sock", "two.sock"]));
    let mut gw = Proc::gateway(&[
        "serve",
        "--config",
        dir.config().to_str().unwrap(),
        "--grace-period",
        "20s",
    ]);
    wait::socket_listens(&one, WAIT).await;
    wait::socket_listens(&dir.sock("two.sock"), WAIT).await;

    // Three kept-alive connections on `one`: one idle, two with a request
    // running in php-fpm (each seen to begin before the next is sent).
    let mut idle = connect(&one).await.unwrap();
    assert_eq!(get_on(&mut idle, "/who.php").await.unwrap().0, 200);
    let in_flight = |ms: u32| {
        let one = one.clone();
        let began = dir.path.join("a/slow.began");
        let _ = std::fs::remove_file(&began);
        let task = tokio::spawn(async move {
            let mut conn = connect(&one).await.unwrap();
            let got = get_on(&mut conn, &format!("/slow.php?ms={ms}")).await;
            (got, conn)
        });
        (task, began)
    };
    let (short, began) = in_flight(800);
    wait::until("the short request to run in php-fpm", WAIT, || {
        began.exists()
    })
    .await;
    let (long, began) = in_flight(3000);
    wait::until("the long request to run in php-fpm", WAIT, || {
        began.exists()
    })
    .await;

    dir.write_config(&config(&["two.sock"]));
    gw.signal(libc::SIGHUP);
    let reloaded = gw.wait_log("config reloaded", 1).await;
    assert!(reloaded.contains("listeners_removed=1"), "{reloaded}");
    wait::until("the idle connection to be closed", WAIT, || {
        idle.is_closed()
    })
    .await;
    let (got, conn) = short.await.unwrap();
    assert_eq!(got, Ok((200, "slept 800".to_owned())));
    wait::until("the short request's connection to be closed", WAIT, || {
        conn.is_closed()
    })
    .await;

    // The long one still runs: the drain waits for it.
    gw.signal(libc::SIGTERM);
    let (got, _conn) = long.await.unwrap();
    assert_eq!(got, Ok((200, "slept 3000".to_owned())));
    assert_eq!(gw.child.wait().unwrap().code(), Some(0));
    let log = gw.lines().join("\n");
    assert!(log.contains("drained; bye"), "{log}");
}
