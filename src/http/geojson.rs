//! GeoJSON answers, the same for every resource that serves features: the media type, and a
//! keyset-paged FeatureCollection with its `self` link and, when there is more, a `next` link
//! that repeats the query with `after` moved on.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use super::params::next_href;

const GEOJSON: &str = "application/geo+json";

/// `body` as `application/geo+json`.
pub fn response(body: &impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(GEOJSON));
    response
}

/// One page of `features` answered to the query `raw` on `path`; `next` is the cursor of the
/// page after it, when there is one.
pub fn page(
    path: &str,
    raw: Option<&str>,
    features: &[impl Serialize],
    next: Option<String>,
) -> Response {
    let self_href = match raw {
        Some(r) if !r.is_empty() => format!("{path}?{r}"),
        _ => path.to_owned(),
    };
    let mut links = vec![json!({"rel": "self", "href": self_href, "type": GEOJSON})];
    if let Some(cursor) = next {
        links.push(json!({"rel": "next", "href": next_href(path, raw, &cursor), "type": GEOJSON}));
    }
    response(&json!({
        "type": "FeatureCollection",
        "numberReturned": features.len(),
        "timeStamp": Utc::now(),
        "links": links,
        "features": features,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_replaces_after() {
        assert_eq!(
            next_href("/api/v1/detections", Some("bbox=1,2,3,4&after=5"), "9"),
            "/api/v1/detections?bbox=1%2C2%2C3%2C4&after=9"
        );
        assert_eq!(
            next_href("/api/v1/transmitters", Some("radio=wifi&after=old"), "c"),
            "/api/v1/transmitters?radio=wifi&after=c"
        );
    }
}
