//! The push sinks: a webhook (a JSON document) and an ntfy topic (a message with a title and a
//! priority, as ntfy's own clients send). Each delivers the threats in order from its cursor,
//! at least once: an event is retried with a doubling wait up to `notify.max_attempts`, then
//! kept as a dead letter (and counted) so the next threats still go out.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{NotifySettings, Secret};
use crate::db;
use crate::db::events::ThreatEvent;
use crate::notify::post;

#[derive(Clone, Debug)]
pub enum Sink {
    Webhook { url: String, token: Option<Secret> },
    Ntfy { url: String, token: Option<Secret> },
}

/// How one attempt went.
enum Outcome {
    Delivered,
    /// Worth another try (a network error, 5xx, 408, 429).
    Retry(String),
    /// Will not work however often it is tried (another 4xx).
    Refused(String),
}

impl Sink {
    pub fn configured(settings: &NotifySettings) -> Vec<Sink> {
        let mut sinks = Vec::new();
        if !settings.webhook_url.is_empty() {
            sinks.push(Sink::Webhook {
                url: settings.webhook_url.clone(),
                token: settings.webhook_token.clone(),
            });
        }
        if !settings.ntfy_url.is_empty() {
            sinks.push(Sink::Ntfy {
                url: settings.ntfy_url.clone(),
                token: settings.ntfy_token.clone(),
            });
        }
        sinks
    }

    /// Its name in metrics and in `sigint.notification_cursors`.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Webhook { .. } => "webhook",
            Sink::Ntfy { .. } => "ntfy",
        }
    }

    /// The request's headers and body for `e`.
    fn request(&self, e: &ThreatEvent) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let (mut headers, body, token) = match self {
            Sink::Webhook { token, .. } => (
                vec![("content-type", "application/json".to_owned())],
                webhook_body(e).to_string().into_bytes(),
                token,
            ),
            Sink::Ntfy { token, .. } => {
                let what = e.tracker_class.as_deref().unwrap_or(&e.radio);
                let priority = if e.level == "alert" { "urgent" } else { "high" };
                (
                    vec![
                        ("content-type", "text/plain; charset=utf-8".to_owned()),
                        (
                            "title",
                            format!("ShadowCheck {}: {what} {}", e.level, e.identifier),
                        ),
                        ("priority", priority.to_owned()),
                        ("tags", "warning,shadowcheck".to_owned()),
                    ],
                    e.summary.clone().into_bytes(),
                    token,
                )
            }
        };
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {}", t.expose())));
        }
        headers.push((
            "user-agent",
            concat!("shadowcheck/", env!("CARGO_PKG_VERSION")).to_owned(),
        ));
        (headers, body)
    }

    fn url(&self) -> &str {
        match self {
            Sink::Webhook { url, .. } | Sink::Ntfy { url, .. } => url,
        }
    }

    async fn attempt(&self, e: &ThreatEvent, timeout: Duration) -> Outcome {
        let (headers, body) = self.request(e);
        match post::post(self.url(), &headers, body, timeout).await {
            Ok(status) if status.is_success() => Outcome::Delivered,
            Ok(status) => {
                let why = format!("HTTP {status}");
                if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                    Outcome::Retry(why)
                } else {
                    Outcome::Refused(why)
                }
            }
            Err(why) => Outcome::Retry(why),
        }
    }
}

/// The webhook's document: the threat, its explanation in words, and where to read more.
fn webhook_body(e: &ThreatEvent) -> serde_json::Value {
    let transmitter = format!("/api/v1/transmitters/{}/{}", e.radio, e.identifier);
    json!({
        "type": "threat",
        "id": e.id,
        "level": e.level,
        "level_before": e.level_before,
        "score": e.score,
        "radio": e.radio,
        "identifier": e.identifier,
        "device_id": e.device_id,
        "tracker_class": e.tracker_class,
        "summary": e.summary,
        "created_at": e.created_at,
        "links": {
            "transmitter": transmitter,
            "report": format!("/report/{}/{}/{}", e.radio, e.identifier, e.device_id),
        },
    })
}

/// Delivers `sink`'s events until shutdown.
pub async fn deliver(
    pool: db::Pool,
    sink: Sink,
    settings: NotifySettings,
    mut woken: tokio::sync::broadcast::Receiver<std::sync::Arc<ThreatEvent>>,
    shutdown: CancellationToken,
) {
    let name = sink.name();
    for outcome in ["delivered", "retried", "dead_letter"] {
        metrics::counter!("shadowcheck_notifications_total", "sink" => name, "outcome" => outcome)
            .increment(0);
    }
    let poll = Duration::from_millis(settings.poll_ms);
    loop {
        match next_events(&pool, name).await {
            Ok(events) if !events.is_empty() => {
                for e in events {
                    let delivery = send_with_retries(&sink, &e, &settings, &shutdown).await;
                    let Some(delivery) = delivery else { return };
                    if let Err(err) = finish(&pool, name, &e, &delivery).await {
                        tracing::warn!(sink = name, error = %err, "cannot move the notification cursor");
                        break;
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(sink = name, error = %err, "cannot read threats to deliver"),
        }
        // Woken by the poller's news, or on the poll interval.
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = woken.recv() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The events after the sink's cursor (a few at a time).
async fn next_events(pool: &db::Pool, sink: &str) -> Result<Vec<ThreatEvent>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let cursor = db::events::cursor(&mut conn, sink).await?;
    db::events::after(&mut conn, cursor, 20).await
}

/// How an event ended for a sink.
enum Delivery {
    Delivered,
    Dead { attempts: u32, why: String },
}

/// Tries an event until it is delivered or given up on; `None` when the process is stopping
/// (the cursor stays, the next start delivers it).
async fn send_with_retries(
    sink: &Sink,
    e: &ThreatEvent,
    settings: &NotifySettings,
    shutdown: &CancellationToken,
) -> Option<Delivery> {
    let name = sink.name();
    let mut wait = Duration::from_millis(settings.retry_base_ms);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let why = match sink
            .attempt(e, Duration::from_millis(settings.timeout_ms))
            .await
        {
            Outcome::Delivered => return Some(Delivery::Delivered),
            Outcome::Refused(why) => {
                return Some(Delivery::Dead {
                    attempts: attempt,
                    why,
                })
            }
            Outcome::Retry(why) if attempt >= settings.max_attempts => {
                return Some(Delivery::Dead {
                    attempts: attempt,
                    why,
                })
            }
            Outcome::Retry(why) => why,
        };
        metrics::counter!("shadowcheck_notifications_total", "sink" => name, "outcome" => "retried")
            .increment(1);
        tracing::info!(sink = name, event = e.id, attempt, %why, "notification failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return None,
        }
        wait = wait.saturating_mul(2);
    }
}

/// Moves the cursor past `e`, keeping it as a dead letter when it was not delivered.
async fn finish(
    pool: &db::Pool,
    sink: &'static str,
    e: &ThreatEvent,
    delivery: &Delivery,
) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let delivered = match delivery {
        Delivery::Delivered => true,
        Delivery::Dead { attempts, why } => {
            tracing::warn!(sink, event = e.id, attempts, %why, "notification dead-lettered");
            db::events::dead_letter(&mut conn, sink, e.id, *attempts, why).await?;
            false
        }
    };
    db::events::advance(&mut conn, sink, e.id, delivered).await?;
    let outcome = if delivered {
        "delivered"
    } else {
        "dead_letter"
    };
    metrics::counter!("shadowcheck_notifications_total", "sink" => sink, "outcome" => outcome)
        .increment(1);
    Ok(())
}
