//! Thread per core (`--workers`): connections spread over the serving
//! threads, each serving its own, sharing one php-fpm.

use crate::support;

use std::time::Duration;

use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm};
use support::wait::{self, sample};

#[tokio::test]
async fn connections_are_served_on_every_thread() {
    let fpm = PhpFpm::start();
    for upstream in support::upstreams_of(&fpm) {
        let root = fixtures_dir().display().to_string();
        let gw = Gateway::serve(&upstream, &root, &["--workers", "2"]).await;
        let addr = gw.addr;
        let acquired = gw.pool.snapshot().acquired;
        // Six clients at once, each on its own connection: every thread
        // gets some (a thread two connections ahead hands new ones over).
        let slow: Vec<_> = (0..6)
            .map(|_| tokio::spawn(async move { gateway::get(addr, "/slow.php?ms=600").await }))
            .collect();
        wait::until("all six to reach the pool", Duration::from_secs(10), || {
            gw.reached_pool(acquired) >= 6
        })
        .await;
        let snap = gw.pool.snapshot();
        assert_eq!(snap.busy_per_thread.len(), 2, "{upstream}: {snap:?}");
        assert!(
            snap.busy_per_thread.iter().all(|&busy| busy > 0),
            "{upstream}: a thread served none: {snap:?}"
        );
        for reply in slow {
            assert_eq!(reply.await.expect("client").status, 200, "{upstream}");
        }
        gw.shutdown().await;
    }
}

const EMPTY_POLLS: &str = "fcgi_gateway_idle_poll_empty_polls_total";
const WINDOWS_ENDED: &str = "fcgi_gateway_idle_poll_windows_ended_total";
const GAVE_WAY: &str = "fcgi_gateway_idle_poll_gave_way_total";
const NAPS: &str = "fcgi_gateway_idle_poll_naps_total";

/// After work a serving thread polls its sockets briefly before it sleeps
/// (`--idle-poll`, on by default), and then stops: /metrics counts the
/// polls that found nothing and the polling that ended. `--idle-poll off`
/// makes none.
#[tokio::test]
async fn serving_threads_poll_after_work_unless_told_not_to() {
    let root = fixtures_dir().display().to_string();
    for upstream in support::shared_upstreams() {
        for poll in [true, false] {
            let mut args = vec!["--admin-listen", "127.0.0.1:0", "--workers", "2"];
            if !poll {
                args.extend(["--idle-poll", "off"]);
            }
            let gw = Gateway::serve(&upstream, &root, &args).await;
            let admin = gw.admin.expect("admin listener");
            let statuses = gateway::load(gw.addr, "/hello.php", 40, 2).await;
            assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
            if poll {
                wait::scrape_until(admin, Duration::from_secs(10), |t| {
                    sample(t, EMPTY_POLLS) > 0 && sample(t, WINDOWS_ENDED) + sample(t, GAVE_WAY) > 0
                })
                .await;
            } else {
                // Idle a while: nothing polled, before or after.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let text = wait::scrape_until(admin, Duration::from_secs(10), |_| true).await;
                for name in [EMPTY_POLLS, WINDOWS_ENDED, GAVE_WAY, NAPS] {
                    assert_eq!(sample(&text, name), 0, "{upstream}: {name}\n{text}");
                }
            }
            gw.shutdown().await;
        }
    }
}

/// CPU time (user + system) the process `pid` has used, all its threads.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // The fields after the command name, which is in parentheses.
    let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(per_second > 0, "clock ticks per second");
    Duration::from_millis(ticks * 1000 / per_second as u64)
}

/// The polling after work ends: a gateway that has served a burst and is
/// then left alone uses next to no CPU (polling that never stopped would
/// take a CPU per serving thread).
#[tokio::test]
async fn an_idle_gateway_uses_next_to_no_cpu() {
    use support::binary::Binary;

    let fpm = support::shared_fpm();
    let upstream = format!("unix:{}", fpm.unix_socket.display());
    let root = fixtures_dir().display().to_string();
    let mut gw = Binary::start_as_given(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--root",
        &root,
        "--workers",
        "2",
    ]);
    let addr = gw.listen_addr("http");
    let statuses = gateway::load(addr, "/hello.php", 400, 8).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = gw.child.id();
    let before = process_cpu(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = process_cpu(pid) - before;
    assert!(
        used < Duration::from_millis(300),
        "idle for 2 s, used {used:?}"
    );
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
}
