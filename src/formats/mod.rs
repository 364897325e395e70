//! Capture-device formats as pure parsers: bytes (or a file) in, rows in our own JSON detection
//! shape (or that row's error) out. No database, no HTTP, no terminal: every row then goes
//! through `ingest`, so each format meets the same validation and privacy policy.

pub mod geosubmit;
pub mod json;
pub mod kismet;
pub mod wigle;

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// One item of a batch: where it stood in its source (zero-based index in an API request, line
/// number in a file) and either a detection in our JSON shape or why it could not be read.
pub type Row = (u64, Result<Value, String>);

/// The input is not in the expected format at all: nothing was read from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

impl From<String> for FormatError {
    fn from(why: String) -> Self {
        Self(why)
    }
}

/// A stable device id derived from a description of the device (e.g. a WiGLE pre-header or an
/// API key name), so re-imports of the same capture deduplicate.
pub fn device_uuid(description: &str) -> Uuid {
    let digest = Sha256::digest(description.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// gzip is recognised by its magic bytes, whatever a file name or a header claims.
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// Inflates `bytes` when they are gzip, refusing output larger than `limit` (a small bomb must
/// not become gigabytes in memory). `Err(None)` means over the limit.
pub fn gunzip_bounded(bytes: &[u8], limit: usize) -> Result<Vec<u8>, Option<String>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Some(format!("invalid gzip data: {e}")))?;
    if out.len() > limit {
        return Err(None);
    }
    Ok(out)
}

/// Wraps a reader so gzip input is inflated as it streams.
pub fn maybe_gunzip<R: Read + Send + 'static>(reader: R) -> std::io::Result<Box<dyn Read + Send>> {
    let mut buffered = std::io::BufReader::new(reader);
    let head = std::io::BufRead::fill_buf(&mut buffered)?;
    if is_gzip(head) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// The capture-file formats `shadowcheck import` and `POST /api/v1/imports` read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    WigleCsv,
    GeosubmitJson,
    Kismet,
}

impl FileFormat {
    /// By file name (`.kismet`, `.json[.gz]`, anything else is WiGLE CSV).
    pub fn of_name(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        let name = name.trim_end_matches(".gz");
        if name.ends_with(".kismet") {
            Self::Kismet
        } else if name.ends_with(".json") {
            Self::GeosubmitJson
        } else {
            Self::WigleCsv
        }
    }
}

/// Where a capture file's bytes come from.
pub enum Input {
    /// A stream (an upload, a file), gzip or not.
    Stream(Box<dyn Read + Send>),
    /// A file on disk (Kismet logs are SQLite databases, read in place).
    Path(PathBuf),
}

/// Reads a file's rows into the callback until it returns false; says why the input broke off.
type ReadRows = Box<dyn FnOnce(&mut dyn FnMut(Row) -> bool) -> Option<String> + Send>;

/// An opened capture file, read row by row on a blocking thread.
pub struct CaptureFile {
    /// The format as reported, e.g. `wigle-csv (WigleWifi-1.6)`.
    pub format: String,
    /// What the file says about the capture device (e.g. the WiGLE pre-header).
    pub source: Value,
    reader: ReadRows,
}

impl CaptureFile {
    /// Opens `input` as `format`; the capture device is `device_id`, or one derived from the
    /// file's own description (`filename` for formats that have none).
    pub fn open(
        format: FileFormat,
        input: Input,
        device_id: Option<String>,
        filename: Option<&str>,
    ) -> Result<Self, FormatError> {
        match (format, input) {
            (FileFormat::Kismet, Input::Path(path)) => {
                kismet::open_file(&path, device_id, filename)
            }
            (FileFormat::Kismet, Input::Stream(_)) => Err(FormatError(
                "Kismet logs are read from a file, not a stream".into(),
            )),
            (format, Input::Path(path)) => {
                let file = std::fs::File::open(&path)
                    .map_err(|e| FormatError(format!("cannot open {}: {e}", path.display())))?;
                Self::open(format, Input::Stream(Box::new(file)), device_id, filename)
            }
            (FileFormat::WigleCsv, Input::Stream(reader)) => wigle::open_file(reader, device_id),
            (FileFormat::GeosubmitJson, Input::Stream(reader)) => {
                geosubmit::open_file(reader, device_id, filename)
            }
        }
    }

    pub(crate) fn new(
        format: String,
        source: Value,
        reader: impl FnOnce(&mut dyn FnMut(Row) -> bool) -> Option<String> + Send + 'static,
    ) -> Self {
        Self {
            format,
            source,
            reader: Box::new(reader),
        }
    }

    /// Calls `emit` with every row until the end or until it returns false. Returns why the
    /// input ended early (truncated compression, an I/O error), if it did.
    pub fn read(self, emit: &mut dyn FnMut(Row) -> bool) -> Option<String> {
        (self.reader)(emit)
    }
}
