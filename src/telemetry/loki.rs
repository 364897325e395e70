//! Log shipping straight to Loki's push API (protobuf + snappy, the format Promtail and Alloy
//! speak), behind a bounded queue.
//!
//! Why not `tracing-loki`'s background task: its send queue is unbounded and its HTTP client has
//! no timeout, so a Loki that is down (or accepts and never answers) pins every log event in
//! memory. Here the queue holds at most `loki.queue_capacity` events and drops the oldest beyond
//! that, every push is bounded by `loki.timeout_ms`, and drops and failures are counted. Pushing
//! runs on its own thread, so a slow Loki never blocks a request.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use loki_api::logproto::{EntryAdapter, PushRequest, StreamAdapter};
use loki_api::prost::Message;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::ExporterState;
use crate::config::LokiSettings;

/// Events from this module are never shipped, so a failing Loki cannot feed itself.
const OWN_TARGET: &str = module_path!();

struct Entry {
    level: Level,
    timestamp: SystemTime,
    line: String,
}

struct Queue {
    entries: Mutex<VecDeque<Entry>>,
    wake: Condvar,
    capacity: usize,
    closed: AtomicBool,
    state: Arc<super::Exporters>,
}

impl Queue {
    fn exporter(&self) -> &ExporterState {
        &self.state.loki
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        // A panic while holding the lock cannot leave the deque inconsistent; keep going.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count_dropped(&self, n: usize) {
        if n > 0 {
            self.exporter()
                .dropped
                .fetch_add(n as u64, Ordering::Relaxed);
            metrics::counter!("shadowcheck_log_events_dropped_total").increment(n as u64);
        }
    }

    fn push(&self, entry: Entry, batch_size: usize) {
        let mut entries = self.lock();
        let mut dropped = 0;
        while entries.len() >= self.capacity {
            entries.pop_front();
            dropped += 1;
        }
        entries.push_back(entry);
        let full_batch = entries.len() >= batch_size;
        self.exporter()
            .queued
            .store(entries.len() as u64, Ordering::Relaxed);
        drop(entries);
        self.count_dropped(dropped);
        if full_batch {
            self.wake.notify_one();
        }
    }

    /// Puts a failed batch back in front, keeping the bound by dropping the oldest.
    fn requeue(&self, batch: Vec<Entry>) {
        let mut entries = self.lock();
        for entry in batch.into_iter().rev() {
            entries.push_front(entry);
        }
        let mut dropped = 0;
        while entries.len() > self.capacity {
            entries.pop_front();
            dropped += 1;
        }
        self.exporter()
            .queued
            .store(entries.len() as u64, Ordering::Relaxed);
        drop(entries);
        self.count_dropped(dropped);
    }

    /// Waits until a full batch is queued, `wait` has passed, or the queue is closed.
    fn take_batch(&self, batch_size: usize, wait: Duration) -> Vec<Entry> {
        let mut entries = self.lock();
        let deadline = Instant::now() + wait;
        while entries.len() < batch_size && !self.closed.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            entries = self
                .wake
                .wait_timeout(entries, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        let n = entries.len().min(batch_size);
        let batch = entries.drain(..n).collect();
        self.exporter()
            .queued
            .store(entries.len() as u64, Ordering::Relaxed);
        batch
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Sleeps for `d` unless the queue is closed meanwhile.
    fn pause(&self, d: Duration) {
        let entries = self.lock();
        if !self.closed.load(Ordering::SeqCst) {
            let _ = self.wake.wait_timeout(entries, d);
        }
    }
}

/// Owns the shipping thread; `shutdown` flushes what is queued within a deadline.
pub struct LokiShipper {
    queue: Arc<Queue>,
    done: std::sync::mpsc::Receiver<()>,
}

/// Builds the layer (for the subscriber) and the shipper (to keep and flush on exit).
pub fn build(
    settings: &LokiSettings,
    url: &str,
    service: &str,
    state: Arc<super::Exporters>,
) -> (LokiLayer, LokiShipper) {
    let push_url = if url.trim_end_matches('/').ends_with("/loki/api/v1/push") {
        url.to_owned()
    } else {
        format!("{}/loki/api/v1/push", url.trim_end_matches('/'))
    };
    state.loki.enabled.store(true, Ordering::Relaxed);
    let queue = Arc::new(Queue {
        entries: Mutex::new(VecDeque::new()),
        wake: Condvar::new(),
        capacity: settings.queue_capacity,
        closed: AtomicBool::new(false),
        state,
    });
    let labels = |level: &str| {
        let mut s = String::from("{");
        let _ = write!(
            s,
            "service={service:?}, environment={:?}, level={level:?}",
            settings.environment
        );
        s.push('}');
        s
    };
    let shipper = Shipper {
        queue: Arc::clone(&queue),
        url: push_url,
        labels: [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .map(|l| (l, labels(&l.as_str().to_ascii_lowercase())))
        .to_vec(),
        batch_size: settings.batch_size,
        flush_interval: Duration::from_millis(settings.flush_interval_ms),
        timeout: Duration::from_millis(settings.timeout_ms),
    };
    let (done_tx, done) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("loki-shipper".into())
        .spawn(move || {
            shipper.run();
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        eprintln!("shadowcheck: cannot start the Loki shipping thread: {e}");
    }
    let layer = LokiLayer {
        queue: Arc::clone(&queue),
        batch_size: settings.batch_size,
    };
    (layer, LokiShipper { queue, done })
}

impl LokiShipper {
    /// Stops accepting new batches' retries and pushes what is queued, for at most `within`.
    pub fn shutdown(self, within: Duration) {
        self.queue.closed.store(true, Ordering::SeqCst);
        self.queue.wake.notify_all();
        if self.done.recv_timeout(within).is_err() {
            let left = self.queue.len();
            eprintln!(
                "shadowcheck: Loki flush did not finish in time; {left} log events not shipped"
            );
        }
    }
}

struct Shipper {
    queue: Arc<Queue>,
    url: String,
    labels: Vec<(Level, String)>,
    batch_size: usize,
    flush_interval: Duration,
    timeout: Duration,
}

impl Shipper {
    fn run(self) {
        let client = match reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                self.record_failure(&format!("cannot build HTTP client: {e}"));
                return;
            }
        };
        let mut backoff = Duration::from_millis(500);
        let mut failing = false;
        loop {
            let batch = self.queue.take_batch(self.batch_size, self.flush_interval);
            let closed = self.queue.closed.load(Ordering::SeqCst);
            if batch.is_empty() {
                if closed {
                    return;
                }
                continue;
            }
            let n = batch.len();
            match self.push(&client, &batch) {
                Ok(()) => {
                    self.queue
                        .exporter()
                        .sent
                        .fetch_add(n as u64, Ordering::Relaxed);
                    metrics::counter!("shadowcheck_log_events_shipped_total").increment(n as u64);
                    if failing {
                        tracing::info!(target: OWN_TARGET, "shipping logs to Loki again");
                        failing = false;
                    }
                    backoff = Duration::from_millis(500);
                }
                Err(error) => {
                    self.record_failure(&error);
                    if !failing {
                        // Once per outage, not once per retry.
                        tracing::warn!(target: OWN_TARGET, %error, "cannot ship logs to Loki; queueing (bounded) and retrying");
                        failing = true;
                    }
                    if closed {
                        // Shutting down: no retries, what is left is lost and counted.
                        self.queue.count_dropped(n + self.queue.len());
                        return;
                    }
                    self.queue.requeue(batch);
                    self.queue.pause(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn record_failure(&self, error: &str) {
        let exporter = self.queue.exporter();
        exporter.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = exporter.last_error.lock() {
            *last = Some(error.to_owned());
        }
        metrics::counter!("shadowcheck_log_shipping_failures_total").increment(1);
    }

    fn push(&self, client: &reqwest::blocking::Client, batch: &[Entry]) -> Result<(), String> {
        let streams = self
            .labels
            .iter()
            .map(|(level, labels)| StreamAdapter {
                labels: labels.clone(),
                entries: batch
                    .iter()
                    .filter(|e| e.level == *level)
                    .map(|e| EntryAdapter {
                        timestamp: Some(e.timestamp.into()),
                        line: e.line.clone(),
                    })
                    .collect(),
                hash: 0,
            })
            .filter(|s| !s.entries.is_empty())
            .collect();
        let encoded = PushRequest { streams }.encode_to_vec();
        // Loki expects the snappy *block* format, as Go's snappy.Encode writes.
        let body = snap::raw::Encoder::new()
            .compress_vec(&encoded)
            .map_err(|e| format!("snappy: {e}"))?;
        let response = client
            .post(&self.url)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .body(body)
            .send()
            .map_err(|e| format!("push failed: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("Loki answered {}", response.status()))
        }
    }
}

/// Span fields, kept so every event carries its request's id, trace id, route and status.
#[derive(Default)]
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

/// The `tracing` layer: turns each event into one JSON log line and queues it. Never blocks
/// beyond a short mutex.
pub struct LokiLayer {
    queue: Arc<Queue>,
    batch_size: usize,
}

impl<S> Layer<S> for LokiLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = SpanFields::default();
            attrs.record(&mut JsonVisitor(&mut fields.0));
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() == OWN_TARGET || self.queue.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        line.insert("target".to_owned(), Value::String(meta.target().to_owned()));
        let entry = Entry {
            level: *meta.level(),
            timestamp: SystemTime::now(),
            line: Value::Object(line).to_string(),
        };
        self.queue.push(entry, self.batch_size);
    }
}
