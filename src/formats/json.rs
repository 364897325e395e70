//! Our own JSON ingest shapes: one detection object, an array of them, `{"detections": [...]}`,
//! or NDJSON (one object per line).

use serde_json::Value;

use super::{FormatError, Row};

/// Body encodings accepted on ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    NdJson,
}

/// Splits a body into rows (indexed from 0). JSON syntax errors make the whole body malformed;
/// in NDJSON a bad line is only that row's error, so one corrupt line does not lose the rest.
pub fn decode(body: &[u8], format: BodyFormat) -> Result<Vec<Row>, FormatError> {
    let malformed = |why: &str| FormatError(why.to_owned());
    let items: Vec<Result<Value, String>> = match format {
        BodyFormat::Json => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| FormatError(format!("invalid JSON: {e}")))?;
            match value {
                Value::Array(items) => items.into_iter().map(Ok).collect(),
                Value::Object(mut map) if map.contains_key("detections") => {
                    match map.remove("detections") {
                        Some(Value::Array(items)) if map.is_empty() => {
                            items.into_iter().map(Ok).collect()
                        }
                        Some(Value::Array(_)) => {
                            return Err(malformed("the wrapper object may hold only `detections`"))
                        }
                        _ => return Err(malformed("`detections` must be an array")),
                    }
                }
                single @ Value::Object(_) => vec![Ok(single)],
                _ => {
                    return Err(malformed(
                        "expected a detection object, an array of them, or {\"detections\": [...]}",
                    ))
                }
            }
        }
        BodyFormat::NdJson => {
            let text =
                std::str::from_utf8(body).map_err(|_| malformed("NDJSON body is not UTF-8"))?;
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    serde_json::from_str(line).map_err(|e| format!("invalid JSON line: {e}"))
                })
                .collect()
        }
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (i as u64, item))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_shape() {
        let count = |body: &[u8], f| decode(body, f).map(|rows| rows.len()).ok();
        assert_eq!(
            count(br#"{"signal_type":"wifi"}"#, BodyFormat::Json),
            Some(1)
        );
        assert_eq!(count(br#"[{"a":1},{"b":2}]"#, BodyFormat::Json), Some(2));
        assert_eq!(
            count(br#"{"detections":[{"a":1}]}"#, BodyFormat::Json),
            Some(1)
        );
        assert_eq!(count(b"[]", BodyFormat::Json), Some(0));
        let nd = b"{\"a\":1}\n\n{broken\r\n{\"b\":2}\n";
        let rows = decode(nd, BodyFormat::NdJson).expect("ndjson");
        assert_eq!(rows.len(), 3);
        assert!(rows[1].1.is_err());
        assert_eq!(rows[2].0, 2);
    }

    #[test]
    fn rejects_bad_shapes() {
        for body in [
            &b"[1,"[..],
            b"42",
            br#"{"detections":1}"#,
            br#"{"detections":[],"x":1}"#,
        ] {
            assert!(decode(body, BodyFormat::Json).is_err(), "{body:?}");
        }
    }
}
