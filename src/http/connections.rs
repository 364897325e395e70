//! Every accepted connection is registered and watched, so no client holds a socket it is not
//! using: a connection that sends no request within `header_read_timeout_secs` of being accepted
//! (a silent TCP socket, an HTTP/2 preface and SETTINGS with no stream), one with no request in
//! flight for `idle_timeout_secs`, and one whose reader has stopped taking bytes for
//! `write_stall_timeout_secs` (an export nobody reads) is closed. At `max_connections` the
//! longest-idle connection makes room for a new one, so probes and real clients still get in;
//! only when every connection is busy is the new one refused.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::config::ServerSettings;

/// The limits, from the server settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub first_request: Duration,
    pub idle: Duration,
    pub write_stall: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_settings(settings: &ServerSettings) -> Self {
        Self {
            first_request: Duration::from_secs(settings.header_read_timeout_secs),
            idle: Duration::from_secs(settings.idle_timeout_secs),
            write_stall: Duration::from_secs(settings.write_stall_timeout_secs),
            max_connections: effective_max_connections(settings.max_connections),
        }
    }
}

/// The setting, bounded by the process's file descriptor limit (with room for the database
/// pool, log files and the metrics listener), so the cap is reached before `accept` fails.
fn effective_max_connections(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return configured.max(1);
    }
    let room = usize::try_from(limit.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(128);
    configured.min(room).max(1)
}

/// Why a connection was closed by the server (the metric's label; a fixed set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    NoRequest,
    Idle,
    WriteStalled,
    Evicted,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::NoRequest => "no_request",
            Closed::Idle => "idle",
            Closed::WriteStalled => "write_stalled",
            Closed::Evicted => "evicted",
        }
    }
}

/// One connection's state, shared by its I/O wrapper, its requests and the watchdog.
pub struct Connection {
    id: u64,
    accepted: Instant,
    /// Milliseconds after `accepted` when the last request ended (0: none yet).
    last_request_end: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds after `accepted` (+1) since when a write has waited for the reader; 0: none.
    write_blocked_since: AtomicU64,
    evicted: CancellationToken,
}

impl Connection {
    fn millis(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request started; it counts as in flight until the guard (and its response body) is
    /// dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// How long it has had nothing to do (no request in flight); `None` while one is.
    fn idle_for(&self, now: u64) -> Option<u64> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(now.saturating_sub(self.last_request_end.load(Ordering::Relaxed)))
    }

    /// Why it should be closed now, if it should.
    fn verdict(&self, limits: &Limits) -> Option<Closed> {
        let now = self.millis();
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 && now.saturating_sub(blocked - 1) >= millis(limits.write_stall) {
            return Some(Closed::WriteStalled);
        }
        let idle = self.idle_for(now)?;
        if self.requests.load(Ordering::Relaxed) == 0 {
            (now >= millis(limits.first_request)).then_some(Closed::NoRequest)
        } else {
            (idle >= millis(limits.idle)).then_some(Closed::Idle)
        }
    }

    /// Resolves with the reason once the connection must be closed.
    pub async fn watchdog(&self, limits: Limits) -> Closed {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(reason) = self.verdict(&limits) {
                        return reason;
                    }
                }
                () = self.evicted.cancelled() => return Closed::Evicted,
            }
        }
    }

    fn wrote(&self, progressed: bool) {
        if progressed {
            self.write_blocked_since.store(0, Ordering::Relaxed);
        } else if self.write_blocked_since.load(Ordering::Relaxed) == 0 {
            self.write_blocked_since
                .store(self.millis() + 1, Ordering::Relaxed);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A request in flight on its connection.
pub struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.last_request_end
            .store(conn.millis(), Ordering::Relaxed);
        conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections.
pub struct Connections {
    limits: Limits,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
}

impl Connections {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a newly accepted connection. At the cap, the connection idle the longest is
    /// told to close to make room; `None` when every open one has a request in flight.
    pub fn admit(&self) -> Option<Arc<Connection>> {
        let mut open = self.lock();
        if open.len() >= self.limits.max_connections {
            let victim = open
                .values()
                .filter(|c| !c.evicted.is_cancelled())
                .filter_map(|c| c.idle_for(c.millis()).map(|idle| (idle, c)))
                .max_by_key(|(idle, _)| *idle)
                .map(|(_, c)| Arc::clone(c));
            match victim {
                Some(c) => {
                    c.evicted.cancel();
                    open.remove(&c.id);
                }
                None => {
                    metrics::counter!("shadowcheck_http_connections_refused_total").increment(1);
                    return None;
                }
            }
        }
        let conn = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            accepted: Instant::now(),
            last_request_end: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            write_blocked_since: AtomicU64::new(0),
            evicted: CancellationToken::new(),
        });
        open.insert(conn.id, Arc::clone(&conn));
        metrics::gauge!("shadowcheck_http_connections").set(open.len() as f64);
        Some(conn)
    }

    pub fn forget(&self, conn: &Connection) {
        let mut open = self.lock();
        open.remove(&conn.id);
        metrics::gauge!("shadowcheck_http_connections").set(open.len() as f64);
    }
}

/// The socket with its reads and writes reported to the connection's state.
pub struct Watched<IO> {
    io: IO,
    conn: Arc<Connection>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, conn: Arc<Connection>) -> Self {
        Self { io, conn }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.conn.wrote(!result.is_pending());
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.conn.wrote(!result.is_pending());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.conn.wrote(!result.is_pending());
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request in flight until the last byte is taken (or the body
/// is dropped): a long export is not idle while it streams.
pub struct Guarded {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl Guarded {
    pub fn new(inner: axum::body::Body, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            write_stall: Duration::from_secs(60),
            max_connections: max,
        }
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let connections = Connections::new(limits(2));
        let busy = connections.admit().expect("first");
        let _request = busy.request();
        let idle = connections.admit().expect("second");
        let third = connections.admit().expect("room is made");
        assert!(idle.evicted.is_cancelled());
        assert!(!busy.evicted.is_cancelled());
        let _also_busy = third.request();
        assert!(
            connections.admit().is_none(),
            "every connection is busy: the new one is refused"
        );
    }

    #[test]
    fn a_stalled_write_is_a_reason_to_close_even_mid_request() {
        let connections = Connections::new(Limits {
            write_stall: Duration::ZERO,
            ..limits(4)
        });
        let conn = connections.admit().expect("admitted");
        let _request = conn.request();
        assert_eq!(conn.verdict(&connections.limits()), None);
        conn.wrote(false);
        assert_eq!(
            conn.verdict(&connections.limits()),
            Some(Closed::WriteStalled)
        );
        conn.wrote(true);
        assert_eq!(conn.verdict(&connections.limits()), None);
    }

    #[test]
    fn a_connection_without_a_request_is_closed_after_the_first_request_timeout() {
        let connections = Connections::new(Limits {
            first_request: Duration::ZERO,
            ..limits(4)
        });
        let conn = connections.admit().expect("admitted");
        assert_eq!(conn.verdict(&connections.limits()), Some(Closed::NoRequest));
        let with_request = Connections::new(Limits {
            first_request: Duration::ZERO,
            ..limits(4)
        })
        .admit()
        .expect("admitted");
        drop(with_request.request());
        assert_eq!(
            with_request.verdict(&connections.limits()),
            None,
            "after a request, the idle timeout applies"
        );
    }
}
