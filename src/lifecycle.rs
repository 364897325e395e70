//! Process lifecycle: start-up progress, readiness, draining and OS signals. The only code that
//! touches signals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Shared view of where the process is in its life, read by the probes.
#[derive(Debug)]
pub struct Lifecycle {
    started_at: Instant,
    /// Start-up work (database connection and migrations) has finished.
    started: watch::Sender<bool>,
    draining: AtomicBool,
    shutdown: CancellationToken,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            started_at: Instant::now(),
            started: watch::Sender::new(false),
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
        }
    }
}

impl Lifecycle {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started_at.elapsed()
    }

    pub fn mark_started(&self) {
        self.started.send_replace(true);
    }

    pub fn is_started(&self) -> bool {
        *self.started.borrow()
    }

    /// Resolves once start-up has finished (immediately if it already has).
    pub async fn wait_started(&self) {
        let mut rx = self.started.subscribe();
        // The sender lives as long as `self`, so this only ends when started is true.
        let _ = rx.wait_for(|started| *started).await;
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Readiness turns false at once; the server then stops accepting and drains.
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// First SIGTERM/SIGINT: graceful shutdown. A second one: exit now with status 130.
    pub fn listen_for_signals(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut count = 0u32;
            loop {
                let name = wait_for_signal().await;
                count += 1;
                if count == 1 {
                    tracing::info!(
                        signal = name,
                        "shutdown requested; draining in-flight requests"
                    );
                    this.begin_shutdown();
                } else {
                    tracing::warn!(signal = name, "second signal; exiting without draining");
                    std::process::exit(130);
                }
            }
        });
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers there is nothing to wait for; never resolve.
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
