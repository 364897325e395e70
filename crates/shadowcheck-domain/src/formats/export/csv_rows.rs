//! CSV with longitude/latitude columns, safe to open in a spreadsheet: control characters made
//! visible and formula-looking text neutralised.

use super::*;

pub(super) fn csv_record<'a>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(256)
        .from_writer(out);
    w.write_record(fields).map_err(io)?;
    w.flush().map_err(io)
}

/// A text cell as a spreadsheet may open it: control characters made visible, and a cell that
/// would start a formula (`=`, `+`, `-`, `@`; OWASP's list, TAB and CR being controls already)
/// prefixed with `'`, so `=HYPERLINK(...)` in an SSID is shown, never run.
pub(super) fn spreadsheet_text(s: &str) -> String {
    let visible = visible_controls(s);
    if visible.starts_with(['=', '+', '-', '@']) {
        format!("'{visible}")
    } else {
        visible.into_owned()
    }
}

/// One CSV line: the point's longitude and latitude, then each column (empty when absent).
pub(super) struct CsvRow<'a> {
    columns: &'a [Column],
    values: Vec<String>,
    xy: (f64, f64),
    out: &'a mut Vec<u8>,
}

impl<'a> CsvRow<'a> {
    pub(super) fn new(columns: &'a [Column], out: &'a mut Vec<u8>) -> Self {
        Self {
            columns,
            values: vec![String::new(); columns.len()],
            xy: (0.0, 0.0),
            out,
        }
    }
}

impl PropertyProcessor for CsvRow<'_> {
    fn property(&mut self, _i: usize, name: &str, value: &ColumnValue<'_>) -> Result<bool> {
        if let Some(at) = self.columns.iter().position(|c| c.name == name) {
            self.values[at] = match value {
                ColumnValue::String(s) | ColumnValue::Json(s) => spreadsheet_text(s),
                other => text(other),
            };
        }
        Ok(false)
    }
}

impl GeomProcessor for CsvRow<'_> {
    fn xy(&mut self, x: f64, y: f64, _idx: usize) -> Result<()> {
        self.xy = (x, y);
        Ok(())
    }
}

impl FeatureProcessor for CsvRow<'_> {
    fn feature_end(&mut self, _idx: u64) -> Result<()> {
        let (x, y) = (self.xy.0.to_string(), self.xy.1.to_string());
        let values = std::mem::take(&mut self.values);
        let fields = [x.as_str(), y.as_str()]
            .into_iter()
            .chain(values.iter().map(String::as_str));
        csv_record(self.out, fields)
    }
}
