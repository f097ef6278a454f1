//! Signals: the first SIGINT/SIGTERM starts a graceful drain; a second one
//! exits at once. Knows nothing of HTTP or FastCGI.

use tokio::signal::unix::{signal, SignalKind};

/// Completes on the first SIGINT or SIGTERM, then arms the second-signal
/// fast exit.
pub async fn first_signal() {
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::warn!("second signal: exiting now without draining");
        std::process::exit(1);
    });
}
