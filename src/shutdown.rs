//! Signals: the first SIGINT/SIGTERM starts a graceful drain; a second one
//! exits at once; SIGHUP asks for a config reload. Knows nothing of HTTP or
//! FastCGI.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// One message per SIGHUP (several arriving during one reload count once).
/// Call it early: until the handler is installed, SIGHUP's default action
/// ends the process.
pub fn hangups() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the config");
                    // Full means a reload is already pending: it will read the newest file.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(()) {
                        return;
                    }
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; config reload is off")
        }
    }
    rx
}

/// Completes on the first SIGINT or SIGTERM, then arms the second-signal
/// fast exit. The handlers are installed by this call, not when the future
/// is first polled: a signal arriving in between (say, right after the
/// listeners are up) would otherwise end the process without a drain.
pub fn first_signal() -> impl std::future::Future<Output = ()> + Send {
    let handlers = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => Some((i, t)),
        _ => None,
    };
    async move {
        let Some((mut int, mut term)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
            return;
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
}
