//! Signals to a cancellation token: SIGINT or SIGTERM starts a graceful
//! shutdown; a second signal exits at once.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT/SIGTERM; exits the process on the second.
pub fn install(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: stopping intake, flushing, committing");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without a clean shutdown");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
