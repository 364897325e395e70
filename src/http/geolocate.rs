//! `POST /v1/geolocate`: the ichnaea (Mozilla Location Service) and beaconDB geolocate API, so
//! microG, NeoStumbler and other clients can use a ShadowCheck server as their location service.
//! Answered from the registry's position estimates (`domain::geolocate`). Errors are RFC 9457
//! problems that also carry ichnaea's `error` member, which those clients read.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map};

use crate::db::positioning::{self, Heard};
use crate::domain::geolocate;
use crate::domain::registry::TransmitterKey;
use crate::domain::{Mac, SignalType};
use crate::error::ApiError;
use crate::http::guard::{ReadQueryKeyScope, Require};
use crate::http::schema::Problem;
use crate::state::AppState;

/// At most this many networks of each kind are looked up (ichnaea's clients send tens).
pub const MAX_NETWORKS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/geolocate", post(geolocate))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Request {
    wifi_access_points: Vec<WifiAccessPoint>,
    cell_towers: Vec<CellTower>,
    bluetooth_beacons: Vec<BluetoothBeacon>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WifiAccessPoint {
    mac_address: String,
    signal_strength: Option<i32>,
    ssid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CellTower {
    mobile_country_code: i16,
    mobile_network_code: i16,
    location_area_code: Option<i32>,
    cell_id: i64,
    signal_strength: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BluetoothBeacon {
    mac_address: String,
    signal_strength: Option<i32>,
}

impl Request {
    /// What may be looked up: valid, fixed (not randomised) addresses not opted out with
    /// `_nomap`; an unreadable entry is skipped, as ichnaea does, not the whole request.
    fn heard(&self) -> Vec<Heard> {
        let mac = |radio: SignalType, address: &str, ssid: Option<&str>, signal| {
            let mac: Mac = address.parse().ok()?;
            geolocate::usable(&mac, ssid).then(|| Heard {
                key: TransmitterKey::mac(radio, mac),
                signal_dbm: signal,
            })
        };
        let wifi = self
            .wifi_access_points
            .iter()
            .take(MAX_NETWORKS)
            .filter_map(|w| {
                mac(
                    SignalType::Wifi,
                    &w.mac_address,
                    w.ssid.as_deref(),
                    w.signal_strength,
                )
            });
        let ble = self
            .bluetooth_beacons
            .iter()
            .take(MAX_NETWORKS)
            .filter_map(|b| mac(SignalType::Ble, &b.mac_address, None, b.signal_strength));
        let cells = self
            .cell_towers
            .iter()
            .take(MAX_NETWORKS)
            .filter(|c| c.mobile_country_code > 0 && c.cell_id >= 0)
            .map(|c| Heard {
                key: TransmitterKey::cell(
                    c.mobile_country_code,
                    c.mobile_network_code,
                    c.location_area_code,
                    c.cell_id,
                ),
                signal_dbm: c.signal_strength,
            });
        wifi.chain(ble).chain(cells).collect()
    }
}

/// An error as ichnaea's clients read it, inside the problem document.
pub(crate) struct Refusal(ApiError);

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let (domain, reason, message) = match status {
            StatusCode::NOT_FOUND => ("geolocation", "notFound", "Not found"),
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                ("global", "parseError", "Parse Error")
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                ("usageLimits", "keyInvalid", "Missing or invalid API key.")
            }
            StatusCode::TOO_MANY_REQUESTS => {
                ("usageLimits", "dailyLimitExceeded", "Limit exceeded")
            }
            _ => ("global", "serviceUnavailable", "Service unavailable"),
        };
        let mut extra = Map::new();
        extra.insert(
            "error".into(),
            json!({
                "errors": [{"domain": domain, "reason": reason, "message": message}],
                "code": status.as_u16(),
                "message": message,
            }),
        );
        self.0.into_response_with(extra)
    }
}

#[utoipa::path(
    post,
    path = "/v1/geolocate",
    tag = "geolocate",
    request_body(content = Object, description = "ichnaea geolocate: {\"wifiAccessPoints\": [{macAddress, signalStrength, ssid}], \"cellTowers\": [{radioType, mobileCountryCode, mobileNetworkCode, locationAreaCode, cellId, signalStrength}], \"bluetoothBeacons\": [{macAddress, signalStrength}]}", content_type = "application/json"),
    params(("key" = Option<String>, Query, description = "API key (read scope), as location clients send it")),
    responses(
        (status = 200, description = "{\"location\": {\"lat\", \"lng\"}, \"accuracy\"} (metres)", body = Object),
        (status = 400, description = "Not a geolocate request (ichnaea's `parseError` in `error`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not enough known networks (ichnaea's `notFound` in `error`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
/// Where the client is, from the networks it hears: two or more agreeing Wi-Fi/Bluetooth
/// networks the registry has placed, else a known cell. Randomised and `_nomap` networks are
/// never looked up.
pub(crate) async fn geolocate(
    State(state): State<AppState>,
    _caller: Require<ReadQueryKeyScope>,
    body: Bytes,
) -> Result<Response, Refusal> {
    // An empty body is an empty request (ichnaea answers it with notFound).
    let request: Request = if body.iter().all(u8::is_ascii_whitespace) {
        Request::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedBody {
            detail: format!("not a geolocate request: {e}"),
        })?
    };
    let heard = request.heard();
    let mut conn = state.acquire().await?;
    let known = positioning::known(&mut conn, &heard)
        .await
        .map_err(ApiError::from)?;
    drop(conn);
    let Some(estimate) = geolocate::locate(&known) else {
        metrics::counter!("shadowcheck_geolocate_total", "outcome" => "not_found").increment(1);
        return Err(ApiError::NotFound {
            detail: format!(
                "not enough known networks: {} of {} heard are placed by the registry",
                known.len(),
                heard.len()
            ),
        }
        .into());
    };
    metrics::counter!("shadowcheck_geolocate_total", "outcome" => "found").increment(1);
    let round = |v: f64, places: i32| (v * 10f64.powi(places)).round() / 10f64.powi(places);
    Ok(Json(json!({
        "location": {
            "lat": round(estimate.position.lat(), 7),
            "lng": round(estimate.position.lon(), 7),
        },
        "accuracy": round(estimate.accuracy_m, 1),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_randomised_and_nomap_entries_are_skipped() {
        let request: Request = serde_json::from_value(json!({
            "wifiAccessPoints": [
                {"macAddress": "01:23:45:67:89:ab", "signalStrength": -51},
                {"macAddress": "not a mac"},
                {"macAddress": "da:23:45:67:89:ab"},
                {"macAddress": "01:23:45:67:89:cd", "ssid": "cafe_nomap"}
            ],
            "cellTowers": [{"radioType": "wcdma", "mobileCountryCode": 208, "mobileNetworkCode": 1,
                            "locationAreaCode": 2, "cellId": 1234567}]
        }))
        .expect("a geolocate request");
        let heard = request.heard();
        let ids: Vec<&str> = heard.iter().map(|h| h.key.identifier.as_str()).collect();
        assert_eq!(ids, ["01:23:45:67:89:ab", "208-1-2-1234567"]);
    }
}
