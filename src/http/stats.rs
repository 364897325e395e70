use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::db;
use crate::error::ApiResult;
use crate::http::guard::RequireRead;
use crate::http::schema::Problem;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/stats", get(get_stats))
}

#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "detections",
    responses(
        (status = 200, description = "Counts by signal type, time span and extent", body = Object),
        (status = 401, description = "No or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn get_stats(
    State(state): State<AppState>,
    _caller: RequireRead,
) -> ApiResult<Json<db::detections::Stats>> {
    let stats = state
        .stats
        .get_or_compute(|| async {
            let mut conn = state.read().await?;
            Ok::<_, crate::error::ApiError>(db::detections::stats(&mut conn).await?)
        })
        .await?;
    Ok(Json(stats))
}
