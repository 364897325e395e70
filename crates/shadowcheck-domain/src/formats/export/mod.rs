//! Exports of detections, written one feature at a time so an export of any size streams in
//! constant memory: GeoJSON and GeoJSON text sequences through geozero's writers, FlatGeobuf
//! through our own streaming geozero processor (FlatGeobuf's `FgbWriter` keeps every feature
//! until the end, to sort and index them), CSV with longitude/latitude columns and KML for
//! Google Earth.
//!
//! Every format is a geozero `FeatureProcessor`: [`Encoder::feature`] replays one row as
//! geozero events (properties, then a point), so the columns and their types are the same in
//! every format.

use std::io::Write;

use geozero::error::{GeozeroError, Result};
use geozero::geojson::{GeoJsonLineWriter, GeoJsonWriter};
use geozero::{ColumnValue, FeatureProcessor, GeomProcessor, PropertyProcessor};
use serde_json::{Map, Value};

use crate::domain::fields::{Kind, FIELDS};

mod csv_rows;
mod fgb;
mod kml;

use self::csv_rows::{csv_record, CsvRow};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    GeoJson,
    /// RFC 8142: each feature a record, record separator before, line feed after.
    GeoJsonSeq,
    FlatGeobuf,
    Csv,
    Kml,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 5] = [
        Self::GeoJson,
        Self::GeoJsonSeq,
        Self::FlatGeobuf,
        Self::Csv,
        Self::Kml,
    ];

    /// The `f` parameter's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::GeoJson => "geojson",
            Self::GeoJsonSeq => "geojsonseq",
            Self::FlatGeobuf => "fgb",
            Self::Csv => "csv",
            Self::Kml => "kml",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::GeoJson => "application/geo+json",
            Self::GeoJsonSeq => "application/geo+json-seq",
            Self::FlatGeobuf => "application/flatgeobuf",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Kml => "application/vnd.google-earth.kml+xml",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::GeoJson => "geojson",
            Self::GeoJsonSeq => "geojsons",
            Self::FlatGeobuf => "fgb",
            Self::Csv => "csv",
            Self::Kml => "kml",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The export an `Accept` header prefers, if any: media ranges are weighed by their `q`
    /// (`q=0` means "not this"), and plain (Geo)JSON or `*/*` preferred at least as much means
    /// the paged answer, not an export. Ties go to the range listed first.
    pub fn from_accept(accept: &str) -> Option<Self> {
        let mut best: Option<(f32, Option<Self>)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0_f32;
            for param in parts {
                if let Some(v) = param.trim().strip_prefix("q=") {
                    q = match v.trim().parse::<f32>() {
                        Ok(v) if (0.0..=1.0).contains(&v) => v,
                        _ => 0.0,
                    };
                }
            }
            let choice = match media.as_str() {
                "application/geo+json-seq" => Some(Self::GeoJsonSeq),
                "application/flatgeobuf" => Some(Self::FlatGeobuf),
                "text/csv" => Some(Self::Csv),
                "application/vnd.google-earth.kml+xml" => Some(Self::Kml),
                "application/geo+json" | "application/json" | "application/*" | "*/*" => None,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, choice));
            }
        }
        best.and_then(|(_, choice)| choice)
    }
}

/// A column's type, the same in every format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColumnKind {
    Long,
    Double,
    Bool,
    Text,
    DateTime,
    /// Arrays and objects, as JSON text.
    Json,
}

struct Column {
    name: &'static str,
    kind: ColumnKind,
}

/// `id`, every field of the table but the coordinates (they are the geometry), and the row's
/// own timestamps: the same properties as the GeoJSON search answer.
fn columns() -> Vec<Column> {
    let mut out = vec![Column {
        name: "id",
        kind: ColumnKind::Long,
    }];
    for field in FIELDS {
        let kind = match field.kind {
            Kind::Coordinate { .. } => continue,
            Kind::Timestamp => ColumnKind::DateTime,
            Kind::Number { .. } | Kind::Real { .. } => ColumnKind::Double,
            Kind::Integer { .. } => ColumnKind::Long,
            Kind::Boolean => ColumnKind::Bool,
            Kind::Object { .. } | Kind::Tags { .. } | Kind::ServiceUuids { .. } => ColumnKind::Json,
            Kind::Text { .. }
            | Kind::Word { .. }
            | Kind::Mac
            | Kind::SignalType
            | Kind::Uuid
            | Kind::Hex { .. } => ColumnKind::Text,
        };
        out.push(Column {
            name: field.name,
            kind,
        });
    }
    for name in ["created_at", "updated_at"] {
        out.push(Column {
            name,
            kind: ColumnKind::DateTime,
        });
    }
    out
}

/// One detection as the exporter sees it.
pub struct ExportRow<'a> {
    pub id: i64,
    pub longitude: f64,
    pub latitude: f64,
    pub properties: &'a Map<String, Value>,
}

/// Encodes a whole export: [`Encoder::begin`], [`Encoder::feature`] per row, [`Encoder::end`],
/// each appending to the caller's buffer (which the caller sends on and empties as it likes).
pub struct Encoder {
    format: ExportFormat,
    columns: Vec<Column>,
    written: u64,
}

impl Encoder {
    pub fn new(format: ExportFormat) -> Self {
        Self {
            format,
            columns: columns(),
            written: 0,
        }
    }

    pub fn begin(&mut self, out: &mut Vec<u8>) -> Result<()> {
        match self.format {
            ExportFormat::GeoJson => GeoJsonWriter::new(out).dataset_begin(Some("detections")),
            ExportFormat::GeoJsonSeq => Ok(()),
            ExportFormat::FlatGeobuf => fgb::header(&self.columns, out),
            ExportFormat::Csv => {
                let mut names = vec!["longitude", "latitude"];
                names.extend(self.columns.iter().map(|c| c.name));
                csv_record(out, names.iter().copied())
            }
            ExportFormat::Kml => kml::begin(&self.columns, out),
        }
    }

    pub fn feature(&mut self, row: &ExportRow<'_>, out: &mut Vec<u8>) -> Result<()> {
        let idx = self.written;
        match self.format {
            ExportFormat::GeoJson => replay(
                &self.columns,
                row,
                idx,
                Strings::Escaped,
                &mut GeoJsonWriter::new(out),
            )?,
            ExportFormat::GeoJsonSeq => {
                out.push(0x1e);
                let mut w = GeoJsonLineWriter::new(out);
                replay(&self.columns, row, 0, Strings::Escaped, &mut w)?;
            }
            ExportFormat::FlatGeobuf => {
                let mut w = fgb::FeatureWriter::new(&self.columns, out);
                replay(&self.columns, row, idx, Strings::Raw, &mut w)?
            }
            ExportFormat::Csv => {
                let mut w = CsvRow::new(&self.columns, out);
                replay(&self.columns, row, idx, Strings::Raw, &mut w)?
            }
            ExportFormat::Kml => {
                let mut w = kml::Placemark::new(row.id, out);
                replay(&self.columns, row, idx, Strings::Raw, &mut w)?
            }
        }
        self.written += 1;
        Ok(())
    }

    pub fn end(&mut self, out: &mut Vec<u8>) -> Result<()> {
        match self.format {
            ExportFormat::GeoJson => GeoJsonWriter::new(out).dataset_end(),
            ExportFormat::Kml => {
                out.extend_from_slice(b"</Document>\n</kml>\n");
                Ok(())
            }
            ExportFormat::GeoJsonSeq | ExportFormat::FlatGeobuf | ExportFormat::Csv => Ok(()),
        }
    }

    /// Features encoded so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// How strings reach the processor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strings {
    Raw,
    /// As JSON string literals: geozero 0.15's GeoJSON writer escapes only `"` in strings, so a
    /// backslash or control character (SSIDs hold any bytes) would make invalid JSON.
    Escaped,
}

/// Plays one row into a geozero processor: its present properties (absent and null ones are
/// left out), then its point.
fn replay<P: FeatureProcessor>(
    columns: &[Column],
    row: &ExportRow<'_>,
    idx: u64,
    strings: Strings,
    p: &mut P,
) -> Result<()> {
    p.feature_begin(idx)?;
    p.properties_begin()?;
    let mut i = 0;
    for column in columns {
        let value = if column.name == "id" {
            Value::from(row.id)
        } else {
            match row.properties.get(column.name) {
                None | Some(Value::Null) => continue,
                Some(v) => v.clone(),
            }
        };
        let json_text;
        let v = match (column.kind, &value) {
            (ColumnKind::Long, v) => match v.as_i64() {
                Some(n) => ColumnValue::Long(n),
                None => continue,
            },
            (ColumnKind::Double, v) => match v.as_f64() {
                Some(n) => ColumnValue::Double(n),
                None => continue,
            },
            (ColumnKind::Bool, Value::Bool(b)) => ColumnValue::Bool(*b),
            (ColumnKind::Text | ColumnKind::DateTime, Value::String(_))
                if strings == Strings::Escaped =>
            {
                json_text = value.to_string();
                ColumnValue::Json(&json_text)
            }
            (ColumnKind::Text, Value::String(s)) => ColumnValue::String(s),
            (ColumnKind::DateTime, Value::String(s)) => ColumnValue::DateTime(s),
            (ColumnKind::Json, v) => {
                json_text = v.to_string();
                ColumnValue::Json(&json_text)
            }
            _ => continue,
        };
        p.property(i, column.name, &v)?;
        i += 1;
    }
    p.properties_end()?;
    p.geometry_begin()?;
    p.point_begin(0)?;
    p.xy(row.longitude, row.latitude, 0)?;
    p.point_end(0)?;
    p.geometry_end()?;
    p.feature_end(idx)
}

fn io(e: impl std::fmt::Display) -> GeozeroError {
    GeozeroError::Feature(e.to_string())
}

/// The text of a property value in CSV and KML.
fn text(value: &ColumnValue<'_>) -> String {
    match value {
        ColumnValue::String(s) | ColumnValue::DateTime(s) | ColumnValue::Json(s) => (*s).to_owned(),
        other => other.to_string(),
    }
}

/// Control characters made visible: SSIDs and device names hold any bytes their owner chose
/// (an escape sequence rewrites a terminal, a NUL truncates a C reader). C0 controls and DEL
/// become their Unicode control pictures (U+2400..U+2421), C1 controls `<U+0085>`-style text.
fn visible_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c as u32 {
            code @ 0..=0x1f => out.push(char::from_u32(0x2400 + code).unwrap_or('\u{fffd}')),
            0x7f => out.push('\u{2421}'),
            code if c.is_control() => out.push_str(&format!("<U+{code:04X}>")),
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(format: ExportFormat, rows: &[(i64, Value)]) -> Vec<u8> {
        let mut enc = Encoder::new(format);
        let mut out = Vec::new();
        enc.begin(&mut out).expect("begin");
        for (id, props) in rows {
            let props = props.as_object().expect("object");
            enc.feature(
                &ExportRow {
                    id: *id,
                    longitude: 13.4,
                    latitude: 52.5,
                    properties: props,
                },
                &mut out,
            )
            .expect("feature");
        }
        enc.end(&mut out).expect("end");
        assert_eq!(enc.written(), rows.len() as u64);
        out
    }

    fn rows() -> Vec<(i64, Value)> {
        vec![
            (
                1,
                json!({"signal_type": "wifi", "ssid": "Caf\u{e9} <&> \u{1} \\ \"", "bssid": "a4:00:00:00:00:01",
                       "detected_at": "2026-11-30T10:00:00Z", "signal_strength_dbm": -60, "is_suspicious": false,
                       "tags": ["a", "b"], "accuracy_meters": 5.5, "bt_name": null}),
            ),
            (
                2,
                json!({"signal_type": "ble", "bt_address": "c4:00:00:00:00:02", "is_suspicious": true}),
            ),
        ]
    }

    #[test]
    fn json_exports_have_integer_ids() {
        let doc: Value =
            serde_json::from_slice(&encode(ExportFormat::GeoJson, &rows())).expect("GeoJSON");
        assert_eq!(doc["type"], "FeatureCollection");
        let f = &doc["features"][0];
        assert_eq!(f["properties"]["id"], 1);
        assert_eq!(f["properties"]["tags"], json!(["a", "b"]));
        assert_eq!(f["geometry"]["coordinates"], json!([13.4, 52.5]));
        assert!(
            f["properties"].get("bt_name").is_none(),
            "nulls are left out"
        );
        assert_eq!(f["properties"]["ssid"], "Caf\u{e9} <&> \u{1} \\ \"");
        let seq = encode(ExportFormat::GeoJsonSeq, &rows());
        let records: Vec<&[u8]> = seq
            .split(|b| *b == 0x1e)
            .filter(|r| !r.is_empty())
            .collect();
        assert_eq!(records.len(), 2);
        for r in records {
            assert_eq!(r.last(), Some(&b'\n'));
            let f: Value = serde_json::from_slice(r).expect("record");
            assert_eq!(f["type"], "Feature");
        }
    }

    #[test]
    fn csv_has_every_column_after_the_coordinates() {
        let text = String::from_utf8(encode(ExportFormat::Csv, &rows())).expect("utf-8");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().expect("headers").clone();
        assert_eq!(&headers[0], "longitude");
        assert_eq!(&headers[2], "id");
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(records.len(), 2);
        let col = |name: &str| headers.iter().position(|h| h == name).expect("column");
        assert_eq!(&records[0][col("ssid")], "Caf\u{e9} <&> \u{2401} \\ \"");
        assert_eq!(&records[0][col("tags")], "[\"a\",\"b\"]");
        assert_eq!(&records[1][col("is_suspicious")], "true");
        assert_eq!(&records[1][col("ssid")], "");
    }

    #[test]
    fn accept_weighs_media_ranges_by_q() {
        let pick = ExportFormat::from_accept;
        assert_eq!(pick("text/csv"), Some(ExportFormat::Csv));
        assert_eq!(pick("text/csv;q=0"), None, "q=0 refuses");
        assert_eq!(
            pick("text/csv;q=0.5, application/flatgeobuf"),
            Some(ExportFormat::FlatGeobuf)
        );
        assert_eq!(
            pick("application/geo+json, text/csv;q=0.9"),
            None,
            "the paged answer first"
        );
        assert_eq!(pick("text/csv, */*;q=0.1"), Some(ExportFormat::Csv));
        assert_eq!(pick("text/csv;q=2"), None, "an invalid q is no preference");
        assert_eq!(pick("text/html"), None);
    }

    #[test]
    fn spreadsheet_cells_never_start_a_formula_or_carry_controls() {
        for (raw, shown) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tTAB", "\u{2409}TAB"),
            ("\rCR", "\u{240d}CR"),
            ("esc\u{1b}[31m", "esc\u{241b}[31m"),
            ("del\u{7f}", "del\u{2421}"),
            ("c1\u{85}", "c1<U+0085>"),
            ("Caf\u{e9}", "Caf\u{e9}"),
        ] {
            assert_eq!(csv_rows::spreadsheet_text(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn kml_is_escaped_xml_with_a_placemark_each() {
        let text = String::from_utf8(encode(ExportFormat::Kml, &rows())).expect("utf-8");
        assert_eq!(text.matches("<Placemark ").count(), 2);
        assert!(text.contains("<name>Caf\u{e9} &lt;&amp;&gt; \u{FFFD} \\ &quot;</name>"));
        assert!(text.contains("<TimeStamp><when>2026-11-30T10:00:00Z</when></TimeStamp>"));
        assert!(text.contains("<name>c4:00:00:00:00:02</name>"));
        assert!(text.trim_end().ends_with("</kml>"));
    }

    #[test]
    fn flatgeobuf_reads_back_with_the_flatgeobuf_reader() {
        use flatgeobuf::{FallibleStreamingIterator, FeatureProperties, FgbReader};
        let bytes = encode(ExportFormat::FlatGeobuf, &rows());
        let reader = FgbReader::open(std::io::Cursor::new(bytes)).expect("header");
        assert_eq!(reader.header().features_count(), 0);
        let mut features = reader.select_all_seq().expect("features");
        let mut seen = Vec::new();
        while let Some(f) = features.next().expect("feature") {
            let id: i64 = f.property("id").expect("id");
            let kind: String = f.property("signal_type").expect("type");
            seen.push((id, kind));
        }
        assert_eq!(seen, vec![(1, "wifi".into()), (2, "ble".into())]);
        assert!(ExportFormat::parse("FGB") == Some(ExportFormat::FlatGeobuf));
        assert_eq!(
            ExportFormat::from_accept("text/html, application/flatgeobuf;q=0.9"),
            Some(ExportFormat::FlatGeobuf)
        );
        assert_eq!(ExportFormat::from_accept("application/geo+json"), None);
    }
}
