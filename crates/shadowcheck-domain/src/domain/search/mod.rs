//! Validated searches: of detections (where, when, what, how many) and of the transmitter
//! registry. Each is built from values that parsed (`values`), so it can only hold a consistent
//! set of filters; the HTTP layer reads its query strings into these.

pub mod detections;
pub mod transmitters;
pub mod values;

pub use detections::{covering_boxes, Area, DetectionSearch, Filters, MAX_RADIUS_M};
pub use transmitters::{Sort, TransmitterCursor, TransmitterSearch};
pub use values::{
    MinSignal, Score, SignalTypes, SsidPattern, TextPattern, TimeWindow, Timestamp, Trackers, YesNo,
};

/// A parameter that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchError {
    pub parameter: String,
    pub reason: String,
}

impl SearchError {
    pub fn new(parameter: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            parameter: parameter.to_owned(),
            reason: reason.to_string(),
        }
    }
}
