//! hyper answers a few broken requests itself, before any handler runs: 400 for a request it
//! cannot parse, 414 for an overlong target, 431 for a head over `server.max_header_bytes`
//! (a head that does not arrive within `server.header_read_timeout_secs` gets no answer: the
//! connection is closed). Those answers have empty bodies. [`EdgeProblems`] wraps a connection
//! and replaces exactly those answers (status 400, 414 or 431 with `content-length: 0` and no
//! content type, which our handlers never send) with the same status and a problem+json body,
//! so every client error reads alike.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::problem_body;

pub struct EdgeProblems<S> {
    inner: S,
    /// A replacement answer not yet fully written.
    pending: Vec<u8>,
}

impl<S> EdgeProblems<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }
}

/// The problem+json answer standing for hyper's own empty answer `written`, if it is one.
fn replacement(written: &[u8]) -> Option<Vec<u8>> {
    let head_len = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head_len + 4 != written.len() {
        return None;
    }
    let head = std::str::from_utf8(&written[..head_len]).ok()?;
    let mut lines = head.split("\r\n");
    let code: u16 = lines
        .next()?
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let (slug, title, detail) = match code {
        400 => (
            "bad-request",
            "Bad request",
            "the request could not be parsed as HTTP",
        ),
        414 => (
            "uri-too-long",
            "URI too long",
            "the request target is too long",
        ),
        431 => (
            "headers-too-large",
            "Request header fields too large",
            "the request line and headers exceed server.max_header_bytes",
        ),
        _ => return None,
    };
    let headers: Vec<&str> = lines.collect();
    let named = |name: &str| {
        headers.iter().any(|h| {
            h.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
    };
    let empty = headers.iter().any(|h| {
        h.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("content-length") && v.trim() == "0"
        })
    });
    if !empty || named("content-type") {
        return None;
    }
    let status = StatusCode::from_u16(code).ok()?;
    let body = problem_body(status, slug, title, detail.to_owned());
    let mut out = format!("HTTP/1.1 {code} {}\r\n", status.canonical_reason()?);
    for h in headers.iter().filter(|h| {
        !h.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
    }) {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("content-type: application/problem+json\r\nx-content-type-options: nosniff\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<S: AsyncWrite + Unpin> EdgeProblems<S> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EdgeProblems<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EdgeProblems<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        // hyper's own answers are a bare head, written in one piece.
        if buf.len() < 1024 {
            if let Some(answer) = replacement(buf) {
                self.pending = answer;
                // Accepted: what is not written now is written on the next write or flush.
                if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_hyper_empty_answers() {
        let out = replacement(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
        )
        .expect("replaced");
        let text = String::from_utf8(out).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\ndate: x\r\n"));
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["status"], 431);
        for untouched in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert!(replacement(untouched).is_none(), "{untouched:?}");
        }
    }
}
