//! The detection domain: types that can only hold valid values. No HTTP, no SQL.

pub mod detection;
pub mod device;
pub mod fields;
pub mod following;
pub mod geo;
pub mod geolocate;
pub mod mac;
pub mod privacy;
pub mod registry;
pub mod rogue;
pub mod search;
pub mod tile;
pub mod tracker;

pub use detection::{Detection, FieldError, SignalType, ValidationPolicy};
pub use geo::{BBox, Bounds, Position};
pub use mac::Mac;
