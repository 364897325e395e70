//! Live warnings. One poller per process reads the threats as they appear
//! (`sigint.threat_events`, written by the scorer in its own transaction) and hands them to the
//! open pages' event streams; each configured sink (a webhook, an ntfy topic) delivers them in
//! order from its own cursor, with retries, and dead-letters what it cannot deliver.

mod post;
mod sinks;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, Semaphore};

use crate::auth::PerCaller;
use crate::config::NotifySettings;
use crate::db;
use crate::db::events::ThreatEvent;
use crate::lifecycle::Lifecycle;

pub use sinks::Sink;

/// What the event streams share: new threats as they are read, and the streams' turns.
pub struct Hub {
    events: broadcast::Sender<Arc<ThreatEvent>>,
    /// Open streams in all (`notify.max_streams`).
    pub streams: Arc<Semaphore>,
    /// Open streams per key (`notify.streams_per_key`).
    pub streams_per_key: PerCaller,
}

impl Hub {
    pub fn new(settings: &NotifySettings) -> Self {
        // A stream that falls this far behind reads the rest from the database.
        let (events, _) = broadcast::channel(256);
        Self {
            events,
            streams: Arc::new(Semaphore::new(settings.max_streams as usize)),
            streams_per_key: PerCaller::new(settings.streams_per_key as usize),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ThreatEvent>> {
        self.events.subscribe()
    }
}

/// Reads new threats every `notify.poll_ms` and hands them to the open streams; starts a
/// delivery task per configured sink.
pub async fn run_in_serve(
    pool: db::Pool,
    settings: NotifySettings,
    lifecycle: Arc<Lifecycle>,
    hub: Arc<Hub>,
) {
    let shutdown = lifecycle.shutdown_token();
    tokio::select! {
        () = lifecycle.wait_started() => {}
        () = shutdown.cancelled() => return,
    }
    for sink in Sink::configured(&settings) {
        tokio::spawn(sinks::deliver(
            pool.clone(),
            sink,
            settings.clone(),
            hub.subscribe(),
            shutdown.clone(),
        ));
    }
    let poll = Duration::from_millis(settings.poll_ms);
    let mut last: Option<i64> = None;
    // Woken at once by the scorer's commits (any replica's); polling stays as the fallback.
    let mut listener = listen(&pool).await;
    loop {
        let read = async {
            let mut conn = pool.acquire().await?;
            match last {
                None => Ok::<_, sqlx::Error>((db::events::newest(&mut conn).await?, Vec::new())),
                Some(after) => {
                    let events = db::events::after(&mut conn, after, 500).await?;
                    let newest = events.last().map_or(after, |e| e.id);
                    Ok((newest, events))
                }
            }
        };
        match read.await {
            Ok((newest, events)) => {
                last = Some(newest);
                for e in events {
                    // Nobody listening is fine.
                    let _ = hub.events.send(Arc::new(e));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read new threats"),
        }
        let woken = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            r = woken => if r.is_err() {
                // The listening connection is gone: poll until it is back.
                listener = None;
            },
            () = shutdown.cancelled() => return,
        }
        if listener.is_none() {
            listener = listen(&pool).await;
        }
    }
}

/// A listener on a connection of its own: it holds it for good, and the request pool's
/// connections are the requests' (as the readiness probe has its own).
async fn listen(pool: &db::Pool) -> Option<sqlx::postgres::PgListener> {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pool.inner().connect_options()).clone());
    let mut listener = sqlx::postgres::PgListener::connect_with(&own)
        .await
        .map_err(|e| tracing::debug!(error = %e, "cannot listen for new threats; polling"))
        .ok()?;
    listener.listen(db::events::CHANNEL).await.ok()?;
    Some(listener)
}
