//! What the gateway logs: php-fpm STDERR (logged with its script, never sent
//! to the client) and one access-log line per request. Its own test binary,
//! because tracing's per-callsite interest cache makes thread-local
//! subscribers unreliable when other tests run in parallel threads.

mod support;

use std::time::Duration;

use support::fake_fcgi::{FakeFcgi, Script, Step};
use support::gateway::{self, Gateway};

const HEAD: &[u8] = b"Content-Type: text/plain\r\n\r\n";

fn end() -> Step {
    Step::End {
        app_status: 0,
        protocol_status: 0,
    }
}

/// Captures log output of the current thread (use a current-thread runtime).
fn capture_logs() -> (
    tracing::subscriber::DefaultGuard,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    #[derive(Clone)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (tracing::subscriber::set_default(subscriber), buf)
}

#[tokio::test(flavor = "current_thread")]
async fn stdout_and_stderr_interleaved_stderr_only_logged() {
    let (_guard, logs) = capture_logs();
    let fake = FakeFcgi::start(vec![Script {
        steps: vec![
            Step::Stderr(b"warning before head\n".to_vec()),
            Step::Stdout(HEAD.to_vec()),
            Step::Stdout(b"one ".to_vec()),
            Step::Stderr(b"PHP Notice: in the middle\n".to_vec()),
            Step::Stdout(b"two".to_vec()),
            end(),
        ],
    }])
    .await;
    for upstream in [
        format!("unix:{}", fake.unix_socket.display()),
        format!("tcp:{}", fake.tcp_addr),
    ] {
        let root = support::php_fpm::fixtures_dir().display().to_string();
        let gw = Gateway::start(&["--upstream", &upstream, "--root", &root]).await;
        let r = gateway::get(gw.addr, "/hello.php").await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.text(), "one two");
        gw.shutdown().await;
    }
    // The access line is written when the server drops the response body,
    // which may be just after the client has read it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("warning before head"), "{logs}");
    assert!(logs.contains("PHP Notice: in the middle"), "{logs}");
    assert!(
        logs.contains("/hello.php"),
        "stderr is logged with the script: {logs}"
    );
    // One access-log line per request.
    assert_eq!(logs.matches("\"GET /hello.php\" 200").count(), 2, "{logs}");
}
