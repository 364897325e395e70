//! Capture-device formats as pure parsers: bytes (or a file) in, rows in our own JSON detection
//! shape (or that row's error) out. No database, no HTTP, no terminal: every row then goes
//! through `ingest`, so each format meets the same validation and privacy policy.

pub mod export;
pub mod geosubmit;
pub mod json;
pub mod kismet;
pub mod wigle;

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// One item of a batch: where it stood in its source (zero-based index in an API request, line
/// number in a file) and either a detection in our JSON shape or why it could not be read.
pub type Row = (u64, Result<Value, String>);

/// A batch's rows, produced as they are validated: a large body is held once, as its bytes,
/// and each row becomes a JSON value only while it is checked, not all of them at once.
pub struct Rows {
    iter: Box<dyn Iterator<Item = Row> + Send>,
    /// How many rows there are, when known before reading them.
    known_len: Option<usize>,
}

impl Rows {
    pub fn new(known_len: Option<usize>, iter: impl Iterator<Item = Row> + Send + 'static) -> Self {
        Self {
            iter: Box::new(iter),
            known_len,
        }
    }

    /// The row count, when the source knew it before any row was read.
    pub fn known_len(&self) -> Option<usize> {
        self.known_len
    }
}

impl From<Vec<Row>> for Rows {
    fn from(rows: Vec<Row>) -> Self {
        Self::new(Some(rows.len()), rows.into_iter())
    }
}

impl Iterator for Rows {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        self.iter.next()
    }
}

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

/// Bounds on what one capture stream may hold once inflated, so a small gzip bomb or one
/// endless line cannot take the process's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes after decompression; `None` for the operator's own local files.
    pub max_bytes: Option<u64>,
    /// Longest line of a line-based format (one CSV record is held in memory whole).
    pub max_line_bytes: Option<usize>,
}

/// The longest WiGLE CSV line accepted: real rows are a few hundred bytes.
pub const MAX_CSV_LINE_BYTES: usize = 1024 * 1024;

/// Which bound a stream crossed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error("the file holds more than {0} bytes once decompressed")]
    Bytes(u64),
    #[error("a line is longer than {0} bytes")]
    Line(usize),
}

type Crossed = Arc<Mutex<Option<Exceeded>>>;

/// Counts what passes and fails the read that crosses a bound, noting which.
struct Bounded<R> {
    inner: R,
    limits: Limits,
    total: u64,
    line: usize,
    crossed: Crossed,
}

impl<R: Read> Bounded<R> {
    fn cross(&self, what: Exceeded) -> std::io::Error {
        let error = std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        if let Ok(mut slot) = self.crossed.lock() {
            slot.get_or_insert(what);
        }
        error
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        if let Some(max) = self.limits.max_bytes.filter(|max| self.total > *max) {
            return Err(self.cross(Exceeded::Bytes(max)));
        }
        if let Some(max) = self.limits.max_line_bytes {
            for (i, segment) in buf[..n].split(|b| *b == b'\n').enumerate() {
                if i > 0 {
                    self.line = 0;
                }
                self.line += segment.len();
                if self.line > max {
                    return Err(self.cross(Exceeded::Line(max)));
                }
            }
        }
        Ok(n)
    }
}

/// Wraps a reader so gzip input is inflated as it streams, within `limits` (counted after
/// decompression); `crossed` tells afterwards which bound stopped it, if one did.
fn inflate<R: Read + Send + 'static>(
    reader: R,
    limits: Limits,
    crossed: &Crossed,
) -> std::io::Result<Box<dyn Read + Send>> {
    let mut buffered = std::io::BufReader::new(reader);
    let head = std::io::BufRead::fill_buf(&mut buffered)?;
    let inner: Box<dyn Read + Send> = if is_gzip(head) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    Ok(Box::new(Bounded {
        inner,
        limits,
        total: 0,
        line: 0,
        crossed: Arc::clone(crossed),
    }))
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

/// How reading a capture file ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// The input broke off (truncated compression, an I/O error, a lost upload).
    Input(String),
    /// The input crossed one of its [`Limits`].
    Exceeded(Exceeded),
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
    crossed: Crossed,
}

impl CaptureFile {
    /// Opens `input` as `format`; the capture device is `device_id`, or one derived from the
    /// file's own description (`filename` for formats that have none).
    pub fn open(
        format: FileFormat,
        input: Input,
        device_id: Option<String>,
        filename: Option<&str>,
        max_bytes: Option<u64>,
    ) -> Result<Self, FormatError> {
        let crossed = Crossed::default();
        // A bound crossed while reading the header is named as such, not as a bad header.
        let named = |e: FormatError| match crossed.lock().ok().and_then(|c| c.clone()) {
            Some(what) => FormatError(what.to_string()),
            None => e,
        };
        let limits = |max_line_bytes| Limits {
            max_bytes,
            max_line_bytes,
        };
        let mut file = match (format, input) {
            (FileFormat::Kismet, Input::Path(path)) => {
                kismet::open_file(&path, device_id, filename)
            }
            (FileFormat::Kismet, Input::Stream(_)) => Err(FormatError(
                "Kismet logs are read from a file, not a stream".into(),
            )),
            (format, Input::Path(path)) => {
                let file = std::fs::File::open(&path)
                    .map_err(|e| FormatError(format!("cannot open {}: {e}", path.display())))?;
                let input = Input::Stream(Box::new(file));
                return Self::open(format, input, device_id, filename, max_bytes);
            }
            (FileFormat::WigleCsv, Input::Stream(reader)) => {
                inflate(reader, limits(Some(MAX_CSV_LINE_BYTES)), &crossed)
                    .map_err(|e| FormatError(format!("unreadable input: {e}")))
                    .and_then(|reader| wigle::open_file(reader, device_id))
                    .map_err(named)
            }
            // One JSON document, often on one line: bounded in size only.
            (FileFormat::GeosubmitJson, Input::Stream(reader)) => {
                inflate(reader, limits(None), &crossed)
                    .map_err(|e| FormatError(format!("unreadable input: {e}")))
                    .and_then(|reader| geosubmit::open_file(reader, device_id, filename))
                    .map_err(named)
            }
        }?;
        file.crossed = Arc::clone(&crossed);
        Ok(file)
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
            crossed: Crossed::default(),
        }
    }

    /// Calls `emit` with every row until the end or until it returns false. Says why the input
    /// ended early, if it did.
    pub fn read(self, emit: &mut dyn FnMut(Row) -> bool) -> Option<Broken> {
        let failure = (self.reader)(emit)?;
        let crossed = self.crossed.lock().ok().and_then(|c| c.clone());
        Some(match crossed {
            Some(what) => Broken::Exceeded(what),
            None => Broken::Input(failure),
        })
    }
}
