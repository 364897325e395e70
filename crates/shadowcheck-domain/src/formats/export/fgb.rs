//! FlatGeobuf 3, streamed: magic bytes, a header with the columns and no index (so the
//! feature count may stay unknown, 0), then each feature as a size-prefixed flatbuffer.
//! The layout is the specification's (flatgeobuf.org); the flatbuffers types are the
//! `flatgeobuf` crate's generated ones.

use flatbuffers::FlatBufferBuilder;
use flatgeobuf::{
    Column as FgbColumn, ColumnArgs, ColumnType, Crs, CrsArgs, Feature, FeatureArgs, Geometry,
    GeometryArgs, GeometryType, Header, HeaderArgs,
};

use super::*;

const MAGIC: [u8; 8] = [b'f', b'g', b'b', 3, b'f', b'g', b'b', 0];

fn column_type(kind: ColumnKind) -> ColumnType {
    match kind {
        ColumnKind::Long => ColumnType::Long,
        ColumnKind::Double => ColumnType::Double,
        ColumnKind::Bool => ColumnType::Bool,
        ColumnKind::Text => ColumnType::String,
        ColumnKind::DateTime => ColumnType::DateTime,
        ColumnKind::Json => ColumnType::Json,
    }
}

pub(super) fn header(columns: &[Column], out: &mut Vec<u8>) -> Result<()> {
    let mut fbb = FlatBufferBuilder::new();
    let cols: Vec<_> = columns
        .iter()
        .map(|c| {
            let args = ColumnArgs {
                name: Some(fbb.create_string(c.name)),
                type_: column_type(c.kind),
                nullable: c.name != "id",
                primary_key: c.name == "id",
                unique: c.name == "id",
                ..Default::default()
            };
            FgbColumn::create(&mut fbb, &args)
        })
        .collect();
    let columns = fbb.create_vector(&cols);
    let org = fbb.create_string("EPSG");
    let crs = Crs::create(
        &mut fbb,
        &CrsArgs {
            org: Some(org),
            code: 4326,
            ..Default::default()
        },
    );
    let name = fbb.create_string("detections");
    let title = fbb.create_string("ShadowCheck detections");
    let header = Header::create(
        &mut fbb,
        &HeaderArgs {
            name: Some(name),
            title: Some(title),
            geometry_type: GeometryType::Point,
            columns: Some(columns),
            features_count: 0,
            index_node_size: 0,
            crs: Some(crs),
            ..Default::default()
        },
    );
    fbb.finish_size_prefixed(header, None);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(fbb.finished_data());
    Ok(())
}

/// One feature: properties as (column index u16, value) pairs, little-endian, strings
/// and JSON with a u32 byte length.
pub(super) struct FeatureWriter<'a> {
    columns: &'a [Column],
    properties: Vec<u8>,
    out: &'a mut Vec<u8>,
}

impl<'a> FeatureWriter<'a> {
    pub(super) fn new(columns: &'a [Column], out: &'a mut Vec<u8>) -> Self {
        Self {
            columns,
            properties: Vec::with_capacity(256),
            out,
        }
    }
}

impl PropertyProcessor for FeatureWriter<'_> {
    fn property(&mut self, _i: usize, name: &str, value: &ColumnValue<'_>) -> Result<bool> {
        let Some(at) = self.columns.iter().position(|c| c.name == name) else {
            return Ok(false);
        };
        let p = &mut self.properties;
        p.extend_from_slice(&(at as u16).to_le_bytes());
        let mut bytes = |b: &[u8]| {
            p.extend_from_slice(&(b.len() as u32).to_le_bytes());
            p.extend_from_slice(b);
        };
        match value {
            ColumnValue::Long(v) => p.extend_from_slice(&v.to_le_bytes()),
            ColumnValue::Double(v) => p.extend_from_slice(&v.to_le_bytes()),
            ColumnValue::Bool(v) => p.push(u8::from(*v)),
            ColumnValue::String(s) => bytes(super::visible_controls(s).as_bytes()),
            ColumnValue::DateTime(s) | ColumnValue::Json(s) => bytes(s.as_bytes()),
            other => {
                return Err(GeozeroError::Property(format!(
                    "no FlatGeobuf encoding for {other:?}"
                )))
            }
        }
        Ok(false)
    }
}

impl GeomProcessor for FeatureWriter<'_> {
    fn xy(&mut self, x: f64, y: f64, _idx: usize) -> Result<()> {
        let mut fbb = FlatBufferBuilder::with_capacity(self.properties.len() + 128);
        let xy = fbb.create_vector(&[x, y]);
        let geometry = Geometry::create(
            &mut fbb,
            &GeometryArgs {
                xy: Some(xy),
                ..Default::default()
            },
        );
        let properties = fbb.create_vector(&self.properties);
        let feature = Feature::create(
            &mut fbb,
            &FeatureArgs {
                geometry: Some(geometry),
                properties: Some(properties),
                ..Default::default()
            },
        );
        fbb.finish_size_prefixed(feature, None);
        self.out.extend_from_slice(fbb.finished_data());
        Ok(())
    }
}

impl FeatureProcessor for FeatureWriter<'_> {}
