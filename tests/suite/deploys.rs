//! Symlink deploys (Deployer, Capistrano): `current -> releases/N`, the root
//! is `current/public`, and a deploy switches the link atomically. Like
//! nginx with `$realpath_root`, the next requests run the new release.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::gateway::{self, Gateway};
use support::php_fpm::PhpFpm;

const SCRIPT: &str = "<?php\nheader('Content-Type: text/plain');\n\
    echo basename(dirname(__DIR__)), '|', $_SERVER['SCRIPT_FILENAME'], '|', $_SERVER['DOCUMENT_ROOT'];\n";

fn release(base: &Path, n: &str) -> PathBuf {
    let public = base.join("releases").join(n).join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("index.php"), SCRIPT).unwrap();
    std::fs::write(public.join("v.txt"), n).unwrap();
    public
}

/// `ln -sfn releases/N current.tmp && mv -T current.tmp current`.
fn switch(base: &Path, n: &str) {
    let tmp = base.join("current.tmp");
    std::os::unix::fs::symlink(base.join("releases").join(n), &tmp).unwrap();
    std::fs::rename(&tmp, base.join("current")).unwrap();
}

#[derive(Debug)]
struct Seen {
    started: Instant,
    path: &'static str,
    status: u16,
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_switch_under_load_fails_nothing_and_serves_the_new_release() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let public_1 = release(&base, "1");
    let public_2 = release(&base, "2");
    switch(&base, "1");
    let fpm = PhpFpm::start();
    let upstream = format!("unix:{}", fpm.unix_socket.display());
    let root = base.join("current/public").display().to_string();
    let gw = Gateway::serve(&upstream, &root, &[]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, seen, addr) = (stop.clone(), seen.clone(), gw.addr);
            tokio::spawn(async move {
                let path = if i % 2 == 0 { "/index.php" } else { "/v.txt" };
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let reply = gateway::get(addr, path).await;
                    let body = reply.text();
                    seen.lock().unwrap().push(Seen {
                        started,
                        path,
                        status: reply.status,
                        body,
                    });
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await; // load before the deploy
    switch(&base, "2");
    let switched = Instant::now();
    // A second of cache at most, then every request runs release 2.
    tokio::time::sleep(Duration::from_millis(2500)).await; // load after the deploy
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.len() > 100, "only {} requests", seen.len());
    let failed: Vec<_> = seen.iter().filter(|s| s.status != 200).collect();
    assert!(failed.is_empty(), "failed during the deploy: {failed:?}");
    let script_1 = format!(
        "1|{}|{}",
        public_1.join("index.php").display(),
        public_1.display()
    );
    let script_2 = format!(
        "2|{}|{}",
        public_2.join("index.php").display(),
        public_2.display()
    );
    for s in seen.iter() {
        let release_2 = match s.path {
            "/index.php" => {
                assert!(s.body == script_1 || s.body == script_2, "{s:?}");
                s.body == script_2
            }
            _ => s.body == "2",
        };
        if s.started < switched {
            assert!(!release_2, "release 2 before the switch: {s:?}");
        }
        if s.started > switched + Duration::from_millis(1100) {
            assert!(release_2, "release 1 over a second after the switch: {s:?}");
        }
    }
    let after: usize = seen
        .iter()
        .filter(|s| s.started > switched + Duration::from_millis(1100))
        .count();
    assert!(after > 20, "only {after} requests after the switch settled");
    gw.shutdown().await;
}
