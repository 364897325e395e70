//! KML 2.2 for Google Earth: a Placemark per detection, typed ExtendedData under a
//! Schema, a TimeStamp (Google Earth's time slider) and a style per signal type.

use super::*;

/// `aabbggrr`, as KML writes colours: the map page's palette.
const STYLES: [(&str, &str); 4] = [
    ("wifi", "ffd98c1f"),
    ("bluetooth", "ffb45a8e"),
    ("ble", "ff2fa0e8"),
    ("cellular", "ff3c3cd6"),
];

/// XML 1.0 text: escaped, and without the control characters XML cannot carry at all
/// (an SSID may hold any bytes).
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c as u32, 0xFFFE | 0xFFFF) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn begin(columns: &[Column], out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\">\n<Document>\n<name>ShadowCheck detections</name>\n",
    );
    for (name, colour) in STYLES {
        writeln!(
            out,
            "<Style id=\"{name}\"><IconStyle><color>{colour}</color><scale>0.6</scale><Icon><href>http://maps.google.com/mapfiles/kml/shapes/shaded_dot.png</href></Icon></IconStyle></Style>"
        )?;
    }
    out.extend_from_slice(b"<Schema name=\"detection\" id=\"detection\">\n");
    for c in columns {
        let kind = match c.kind {
            ColumnKind::Long => "int",
            ColumnKind::Double => "double",
            ColumnKind::Bool => "bool",
            ColumnKind::Text | ColumnKind::DateTime | ColumnKind::Json => "string",
        };
        writeln!(out, "<SimpleField type=\"{kind}\" name=\"{}\"/>", c.name)?;
    }
    out.extend_from_slice(b"</Schema>\n");
    Ok(())
}

pub(super) struct Placemark<'a> {
    id: i64,
    data: String,
    name: Option<String>,
    identifier: Option<String>,
    style: Option<String>,
    when: Option<String>,
    out: &'a mut Vec<u8>,
}

impl<'a> Placemark<'a> {
    pub(super) fn new(id: i64, out: &'a mut Vec<u8>) -> Self {
        Self {
            id,
            data: String::new(),
            name: None,
            identifier: None,
            style: None,
            when: None,
            out,
        }
    }
}

impl PropertyProcessor for Placemark<'_> {
    fn property(&mut self, _i: usize, name: &str, value: &ColumnValue<'_>) -> Result<bool> {
        // xsd:boolean as 1/0, which every KML reader takes (GDAL's LIBKML reads them as
        // integers and warns at true/false).
        let t = match value {
            ColumnValue::Bool(b) => u8::from(*b).to_string(),
            other => text(other),
        };
        match name {
            "ssid" | "bt_name" => self.name = Some(t.clone()),
            "bssid" | "bt_address" => self.identifier = Some(t.clone()),
            "signal_type" => self.style = Some(t.clone()),
            "detected_at" => self.when = Some(t.clone()),
            _ => {}
        }
        self.data.push_str(&format!(
            "<SimpleData name=\"{name}\">{}</SimpleData>",
            escape(&t)
        ));
        Ok(false)
    }
}

impl GeomProcessor for Placemark<'_> {
    fn xy(&mut self, x: f64, y: f64, _idx: usize) -> Result<()> {
        let name = self
            .name
            .take()
            .filter(|n| !n.is_empty())
            .or_else(|| self.identifier.take())
            .unwrap_or_else(|| format!("detection {}", self.id));
        write!(
            self.out,
            "<Placemark id=\"d{}\"><name>{}</name>",
            self.id,
            escape(&name)
        )?;
        if let Some(when) = &self.when {
            write!(
                self.out,
                "<TimeStamp><when>{}</when></TimeStamp>",
                escape(when)
            )?;
        }
        if let Some(style) = &self.style {
            write!(self.out, "<styleUrl>#{}</styleUrl>", escape(style))?;
        }
        writeln!(
            self.out,
            "<ExtendedData><SchemaData schemaUrl=\"#detection\">{}</SchemaData></ExtendedData><Point><coordinates>{x},{y}</coordinates></Point></Placemark>",
            self.data
        )?;
        Ok(())
    }
}

impl FeatureProcessor for Placemark<'_> {}
