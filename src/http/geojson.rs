//! GeoJSON answers, the same for every resource that serves features: the media type, and a
//! keyset-paged FeatureCollection with its `self` link and, when there is more, a `next` link
//! that repeats the query with `after` moved on.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

const GEOJSON: &str = "application/geo+json";

/// `body` as `application/geo+json`.
pub fn response(body: &impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(GEOJSON));
    response
}

/// A link object of a GeoJSON or OGC API answer.
pub fn link(href: String, rel: &str, media: &str, title: &str) -> Value {
    json!({"href": href, "rel": rel, "type": media, "title": title})
}

/// One page of `features` answered to the query `raw` on `path`; `next` is the path and query
/// of the page after it (see [`next_href`]), when there is one. Links start with `origin` (empty: relative) and `extra`
/// links follow `self`. Serialised straight from the features: a page of 1000 detections is
/// about 1 MiB of JSON.
pub fn page(
    origin: &str,
    path: &str,
    raw: Option<&str>,
    features: &[impl Serialize],
    next: Option<String>,
    extra: Vec<Value>,
) -> Response {
    #[derive(Serialize)]
    struct Body<'a, F> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "numberReturned")]
        number_returned: usize,
        #[serde(rename = "timeStamp")]
        time_stamp: String,
        links: Vec<Value>,
        features: &'a [F],
    }
    let self_href = match raw {
        Some(r) if !r.is_empty() => format!("{origin}{path}?{r}"),
        _ => format!("{origin}{path}"),
    };
    let mut links = vec![link(self_href, "self", GEOJSON, "This page")];
    links.extend(extra);
    if let Some(cursor) = next {
        // `cursor` is the next page's path and query.
        links.push(link(
            format!("{origin}{cursor}"),
            "next",
            GEOJSON,
            "The next page",
        ));
    }
    response(&Body {
        kind: "FeatureCollection",
        number_returned: features.len(),
        time_stamp: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        links,
        features,
    })
}

/// The same query on `path` with `after` moved to `cursor`.
pub fn next_href(path: &str, raw: Option<&str>, cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k != "after" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("after", cursor);
    format!("{path}?{}", query.finish())
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
