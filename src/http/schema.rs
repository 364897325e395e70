//! Schema-only types: what the OpenAPI document says bodies look like where the handlers build
//! them from other types (problems, GeoJSON features, the ingest field table).

use serde::Serialize;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// One detection as sent by a capture device; its schema is derived from the field table
/// (`domain::fields`), so it cannot drift from what the validator accepts.
pub struct DetectionInput;

impl utoipa::PartialSchema for DetectionInput {
    fn schema() -> RefOr<Schema> {
        use crate::domain::fields::{Kind, FIELDS, SERVER_OWNED};
        use crate::domain::SignalType;
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One detection. `signal_type` decides which fields apply; null counts as absent.",
            ));
        // The detector's fields are output only: a client that sends one is refused.
        for field in FIELDS.iter().filter(|f| !SERVER_OWNED.contains(&f.name)) {
            let always = field.required_for.len() == SignalType::ALL.len();
            let of = |t: Type| -> SchemaType {
                if always {
                    t.into()
                } else {
                    [t, Type::Null].into_iter().collect()
                }
            };
            let list = |types: &[SignalType]| -> String {
                types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut doc = field.doc.to_owned();
            if !field.only_for.is_empty() {
                doc.push_str(&format!(" Only for {}.", list(field.only_for)));
            }
            if !always && !field.required_for.is_empty() {
                doc.push_str(&format!(" Required for {}.", list(field.required_for)));
            }
            let doc = Some(doc);
            let schema: Schema = match field.kind {
                Kind::Timestamp => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(doc)
                    .into(),
                Kind::Coordinate { min, max }
                | Kind::Number { min, max }
                | Kind::Real { min, max } => ObjectBuilder::new()
                    .schema_type(of(Type::Number))
                    .minimum(Some(min))
                    .maximum(Some(max))
                    .description(doc)
                    .into(),
                Kind::Integer { min, max } => ObjectBuilder::new()
                    .schema_type(of(Type::Integer))
                    .minimum(Some(min as f64))
                    .maximum(Some(max as f64))
                    .description(doc)
                    .into(),
                Kind::Text { max_bytes } => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .max_length(Some(max_bytes))
                    .description(doc)
                    .into(),
                Kind::Word { values } => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .examples(values.iter().copied())
                    .description(doc)
                    .into(),
                Kind::Mac => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .pattern(Some("^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"))
                    .description(doc)
                    .into(),
                Kind::SignalType => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .enum_values(Some(SignalType::ALL.iter().map(|t| t.as_str())))
                    .description(doc)
                    .into(),
                Kind::Uuid => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .description(doc)
                    .into(),
                Kind::Boolean => ObjectBuilder::new()
                    .schema_type(of(Type::Boolean))
                    .description(doc)
                    .into(),
                Kind::Object { .. } => ObjectBuilder::new()
                    .schema_type(of(Type::Object))
                    .description(doc)
                    .into(),
                Kind::Tags { max_items } => ArrayBuilder::new()
                    .schema_type(of(Type::Array))
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(64)),
                    )
                    .max_items(Some(max_items))
                    .description(doc)
                    .into(),
                Kind::Hex { max_bytes } => ObjectBuilder::new()
                    .schema_type(of(Type::String))
                    .pattern(Some("^([0-9A-Fa-f]{2})*$"))
                    .max_length(Some(2 * max_bytes))
                    .description(doc)
                    .into(),
                Kind::ServiceUuids { max_items } => ArrayBuilder::new()
                    .schema_type(of(Type::Array))
                    .items(ObjectBuilder::new().schema_type(Type::String).pattern(Some(
                        "^([0-9A-Fa-f]{4}|[0-9A-Fa-f]{8}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$",
                    )))
                    .max_items(Some(max_items))
                    .description(doc)
                    .into(),
            };
            object = object.property(field.name, schema);
            if always {
                object = object.required(field.name);
            }
        }
        RefOr::T(object.into())
    }
}

impl ToSchema for DetectionInput {}

/// An RFC 9457 problem.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct Problem {
    #[schema(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    parameter: Option<String>,
    errors: Option<Vec<crate::ingest::ItemError>>,
}

/// An RFC 7946 FeatureCollection of detections.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct FeatureCollection {
    #[schema(rename = "type", example = "FeatureCollection")]
    kind: String,
    #[schema(rename = "numberReturned")]
    number_returned: u64,
    #[schema(rename = "timeStamp", format = DateTime)]
    time_stamp: String,
    #[schema(value_type = Vec<Object>)]
    links: Vec<serde_json::Value>,
    features: Vec<Feature>,
}

/// A detection as a GeoJSON Feature: Point geometry, every column in `properties`.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct Feature {
    #[schema(rename = "type", example = "Feature")]
    kind: String,
    id: i64,
    #[schema(value_type = Object)]
    geometry: serde_json::Value,
    #[schema(value_type = Object)]
    properties: serde_json::Value,
}

/// A health probe's answer.
#[allow(dead_code)] // only its schema is used
#[derive(Serialize, ToSchema)]
pub struct Health {
    status: String,
}
