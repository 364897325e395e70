//! Request bodies, read the same way by every endpoint that takes one: the size limit is checked
//! against `Content-Length` first and enforced while reading; gzip (by `Content-Encoding` or by
//! its magic bytes) is inflated within the same limit. File uploads stream instead, through
//! [`ChannelReader`], into a parser on a blocking thread.

use std::io::Read;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::ServerSettings;
use crate::error::{ApiError, ApiResult};
use crate::state::{LargeBodies, Turn};

/// How slowly a body may arrive: after a grace period, at least `min_bytes_per_sec` on average,
/// so a client trickling bytes cannot hold a request slot (or an import) open.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    min_bytes_per_sec: u64,
    grace: Duration,
}

impl Pace {
    pub fn new(settings: &ServerSettings) -> Self {
        Self {
            min_bytes_per_sec: settings.min_body_bytes_per_sec,
            grace: Duration::from_secs(settings.body_grace_secs),
        }
    }

    /// By when more than `received` bytes must have arrived, counting from `started`.
    fn deadline(&self, started: Instant, received: u64) -> Instant {
        if self.min_bytes_per_sec == 0 {
            // No pace required; the request timeout still applies.
            return started + Duration::from_secs(365 * 86_400);
        }
        let earned = Duration::from_secs_f64((received + 1) as f64 / self.min_bytes_per_sec as f64);
        started + self.grace + earned
    }

    fn too_slow(&self) -> ApiError {
        ApiError::TooSlow {
            detail: format!(
                "the request body arrived slower than {} bytes/s",
                self.min_bytes_per_sec
            ),
        }
    }
}

fn too_large(limit: u64, what: &str) -> ApiError {
    ApiError::PayloadTooLarge {
        detail: format!("{what} exceeds the limit of {limit} bytes"),
    }
}

/// `Content-Encoding` of a request: none, or gzip; anything else is a 415.
pub fn gzip_encoded(headers: &HeaderMap) -> ApiResult<bool> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        other => Err(ApiError::UnsupportedMediaType {
            detail: format!("Content-Encoding `{other}` is not supported; use gzip or none"),
        }),
    }
}

/// The whole body, inflated when gzip, at most `limit` bytes before and after inflating, and
/// arriving at `pace` at least. A large body waits for its turn first; the turn comes back with
/// the bytes, to be held until they are processed.
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    pace: Pace,
    large: &LargeBodies,
) -> ApiResult<(Bytes, Turn)> {
    let gzip_header = gzip_encoded(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit as u64, "request body"));
    }
    let mut turn = None;
    large
        .admit(declared.unwrap_or(0) as usize, &mut turn)
        .await?;
    let mut started = Instant::now();
    let mut body = body;
    // Sized up front when declared, so a large body is not copied as the buffer grows.
    let mut raw = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let deadline = pace.deadline(started, raw.len() as u64);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(pace.too_slow()),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|e| ApiError::MalformedBody {
                detail: format!("could not read the request body: {e}"),
            })?,
        };
        if let Ok(data) = frame.into_data() {
            if raw.len() + data.len() > limit {
                return Err(too_large(limit as u64, "request body"));
            }
            raw.extend_from_slice(&data);
            if turn.is_none() && raw.len() > large.threshold() {
                // Time spent waiting for a turn is not the client's slowness.
                let waited = Instant::now();
                large.admit(raw.len(), &mut turn).await?;
                started += waited.elapsed();
            }
        }
    }
    let raw = Bytes::from(raw);
    if !(gzip_header || crate::formats::is_gzip(&raw)) {
        return Ok((raw, turn));
    }
    let inflate = |limit: usize| match crate::formats::gunzip_bounded(&raw, limit) {
        Ok(inflated) => Ok(Bytes::from(inflated)),
        Err(None) => Err(None),
        Err(Some(why)) => Err(Some(ApiError::MalformedBody { detail: why })),
    };
    // Small once inflated: no turn needed. Otherwise inflate again, within the limit, in turn.
    if turn.is_none() {
        match inflate(large.threshold()) {
            Ok(inflated) => return Ok((inflated, turn)),
            Err(Some(e)) => return Err(e),
            Err(None) => large.admit(large.threshold() + 1, &mut turn).await?,
        }
    }
    match inflate(limit) {
        Ok(inflated) => Ok((inflated, turn)),
        Err(None) => Err(too_large(limit as u64, "decompressed body")),
        Err(Some(e)) => Err(e),
    }
}

type Chunk = Result<Bytes, std::io::Error>;

/// Adapts a channel of byte chunks (filled by async code) into a blocking `Read`.
pub struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// A streamed upload: the reader a parser consumes, and the pump that feeds it.
pub fn streamed() -> (ChannelReader, mpsc::Sender<Chunk>) {
    let (tx, rx) = mpsc::channel::<Chunk>(8);
    (
        ChannelReader {
            rx,
            current: Bytes::new(),
        },
        tx,
    )
}

/// Discards what is left of an upload whose answer is already decided, bounded in bytes and
/// time so a large or endless upload is not read to its end.
async fn drain<S, E>(stream: &mut S, left: u64)
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
{
    const MAX_BYTES: u64 = 16 * 1024 * 1024;
    let mut budget = left.min(MAX_BYTES);
    // Generous in time (a loaded machine or a slow link), strict in bytes.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = stream.next().await {
            budget = budget.saturating_sub(chunk.len() as u64);
            if budget == 0 {
                break;
            }
        }
    })
    .await;
}

/// Feeds a stream of body chunks into the parser's channel, enforcing the size limit and pace.
pub async fn pump<S, E>(
    mut stream: S,
    tx: mpsc::Sender<Chunk>,
    limit: u64,
    pace: Pace,
) -> ApiResult<()>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let chunk =
            match tokio::time::timeout_at(pace.deadline(started, total), stream.next()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(_) => {
                    let _ = tx
                        .send(Err(std::io::Error::other("the upload arrived too slowly")))
                        .await;
                    return Err(pace.too_slow());
                }
            };
        match chunk {
            Ok(bytes) => {
                total += bytes.len() as u64;
                if total > limit {
                    let _ = tx
                        .send(Err(std::io::Error::other(
                            "upload exceeds the import size limit",
                        )))
                        .await;
                    return Err(too_large(limit, "the file"));
                }
                if tx.send(Ok(bytes)).await.is_err() {
                    // The parser stopped (a bad header, a bound crossed): its error is the
                    // answer. Read a little more of the upload, so a client still sending sees
                    // that answer instead of a reset connection.
                    drain(&mut stream, limit.saturating_sub(total)).await;
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A 400 naming the body field that is wrong, and why.
pub fn bad_body(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        detail: format!("`{field}`: {}", why.into()),
        parameter: Some(field.to_owned()),
    }
}

/// A small JSON body (already read within the body limit), or a 400 that says what is wrong.
pub fn json_body<T: for<'de> serde::Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        detail: format!("the body must be a JSON object as documented: {e}"),
        parameter: None,
    })
}
