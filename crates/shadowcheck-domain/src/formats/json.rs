//! Our own JSON ingest shapes: one detection object, an array of them, `{"detections": [...]}`,
//! or NDJSON (one object per line).
//!
//! A body is checked for syntax once, without building values: each item is kept as a slice of
//! the body and becomes a `serde_json::Value` only while ingest validates it. Parsing a whole
//! 16 MiB body into values at once costs 20-40 times its size; this holds the body once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{FormatError, Rows};

/// Longest text of one item: its fields are small and `raw_data` is at most 64 KiB, so a longer
/// item is refused without being parsed (parsing multiplies the memory its text takes).
pub const MAX_ITEM_BYTES: usize = 256 * 1024;

/// Body encodings accepted on ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    NdJson,
}

/// The elements of a JSON array, as slices of the input: the first `keep`, and how many there
/// are in all (the rest are syntax-checked and counted, never stored).
pub(crate) struct Elements<'de> {
    pub kept: Vec<&'de RawValue>,
    pub total: usize,
}

struct ElementsVisitor {
    keep: usize,
}

impl<'de> Visitor<'de> for ElementsVisitor {
    type Value = Elements<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elements<'de>, A::Error> {
        let mut kept = Vec::new();
        let mut total = 0;
        while total < self.keep {
            match seq.next_element::<&'de RawValue>()? {
                Some(item) => {
                    kept.push(item);
                    total += 1;
                }
                None => return Ok(Elements { kept, total }),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {
            total += 1;
        }
        Ok(Elements { kept, total })
    }
}

/// Reads `text` as one JSON array, keeping at most `keep` elements.
pub(crate) fn elements(text: &str, keep: usize) -> Result<Elements<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let out = (&mut de).deserialize_seq(ElementsVisitor { keep })?;
    de.end()?;
    Ok(out)
}

/// One item's value, refused unparsed when longer than [`MAX_ITEM_BYTES`].
pub(crate) fn item_value(text: &[u8], what: &str) -> Result<Value, String> {
    if text.len() > MAX_ITEM_BYTES {
        return Err(format!(
            "{what} is {} bytes long; the limit is {MAX_ITEM_BYTES}",
            text.len()
        ));
    }
    serde_json::from_slice(text).map_err(|e| format!("invalid JSON {what}: {e}"))
}

/// Rows from slices of `body`, parsed one at a time as they are read; `total` rows in all.
fn lazy(body: &Bytes, slices: Vec<&[u8]>, total: usize, what: &'static str) -> Rows {
    let slices: Vec<Bytes> = slices.into_iter().map(|s| body.slice_ref(s)).collect();
    Rows::new(
        Some(total),
        slices
            .into_iter()
            .enumerate()
            .map(move |(i, text)| (i as u64, item_value(&text, what))),
    )
}

/// Splits a body into rows (indexed from 0), keeping at most `limit`: a batch with more is
/// refused by ingest on its count alone. JSON syntax errors make the whole body malformed; in
/// NDJSON a bad line is only that row's error, so one corrupt line does not lose the rest.
pub fn decode(body: Bytes, format: BodyFormat, limit: usize) -> Result<Rows, FormatError> {
    let malformed = |why: &str| FormatError(why.to_owned());
    let text = std::str::from_utf8(&body).map_err(|_| match format {
        BodyFormat::Json => malformed("invalid JSON: the body is not UTF-8"),
        BodyFormat::NdJson => malformed("NDJSON body is not UTF-8"),
    })?;
    let invalid = |e: serde_json::Error| FormatError(format!("invalid JSON: {e}"));
    match format {
        BodyFormat::NdJson => {
            let mut lines = Vec::new();
            let mut total = 0;
            for line in text.lines().filter(|line| !line.trim().is_empty()) {
                if total < limit {
                    lines.push(line.as_bytes());
                }
                total += 1;
            }
            Ok(lazy(&body, lines, total, "line"))
        }
        BodyFormat::Json => match text.trim_start().as_bytes().first() {
            Some(b'[') => {
                let items = elements(text, limit).map_err(invalid)?;
                let slices = items.kept.iter().map(|r| r.get().as_bytes()).collect();
                Ok(lazy(&body, slices, items.total, "item"))
            }
            Some(b'{') => {
                let map: HashMap<Cow<'_, str>, &RawValue> =
                    serde_json::from_str(text).map_err(invalid)?;
                match map.get("detections") {
                    None => Ok(lazy(&body, vec![text.trim().as_bytes()], 1, "item")),
                    Some(_) if map.len() > 1 => {
                        Err(malformed("the wrapper object may hold only `detections`"))
                    }
                    Some(inner) => {
                        let items = elements(inner.get(), limit)
                            .map_err(|_| malformed("`detections` must be an array"))?;
                        let slices = items.kept.iter().map(|r| r.get().as_bytes()).collect();
                        Ok(lazy(&body, slices, items.total, "item"))
                    }
                }
            }
            _ => {
                serde_json::from_str::<IgnoredAny>(text).map_err(invalid)?;
                Err(malformed(
                    "expected a detection object, an array of them, or {\"detections\": [...]}",
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(body: &[u8], format: BodyFormat) -> Result<Vec<crate::formats::Row>, FormatError> {
        decode(Bytes::copy_from_slice(body), format, 100).map(Iterator::collect)
    }

    #[test]
    fn decodes_each_shape() {
        let count = |body: &[u8], f| rows(body, f).map(|rows| rows.len()).ok();
        assert_eq!(
            count(br#"{"signal_type":"wifi"}"#, BodyFormat::Json),
            Some(1)
        );
        assert_eq!(count(br#"[{"a":1},{"b":2}]"#, BodyFormat::Json), Some(2));
        assert_eq!(
            count(br#" {"detections":[{"a":1}]} "#, BodyFormat::Json),
            Some(1)
        );
        assert_eq!(count(b"[]", BodyFormat::Json), Some(0));
        let nd = b"{\"a\":1}\n\n{broken\r\n{\"b\":2}\n";
        let rows = rows(nd, BodyFormat::NdJson).expect("ndjson");
        assert_eq!(rows.len(), 3);
        assert!(rows[1].1.is_err());
        assert_eq!(rows[2].0, 2);
        assert_eq!(rows[2].1, Ok(serde_json::json!({"b": 2})));
    }

    #[test]
    fn rejects_bad_shapes() {
        for body in [
            &b"[1,"[..],
            b"42",
            b"nonsense",
            br#"{"detections":1}"#,
            br#"{"detections":[],"x":1}"#,
            br#"[{"a":1}] trailing"#,
            b"\xff",
        ] {
            assert!(rows(body, BodyFormat::Json).is_err(), "{body:?}");
        }
    }

    #[test]
    fn items_past_the_limit_are_counted_not_kept() {
        let body = Bytes::from(format!("[{}{{}}]", "{},".repeat(250)));
        let rows = decode(body, BodyFormat::Json, 100).expect("decodes");
        assert_eq!(rows.known_len(), Some(251));
        assert_eq!(rows.count(), 100);
    }

    #[test]
    fn an_item_over_the_size_limit_is_refused_unparsed() {
        let huge = format!(r#"[{{"raw_data":"{}"}}]"#, "x".repeat(MAX_ITEM_BYTES));
        let rows: Vec<_> = decode(Bytes::from(huge), BodyFormat::Json, 100)
            .expect("decodes")
            .collect();
        assert!(rows[0].1.as_ref().is_err_and(|e| e.contains("limit")));
    }
}
