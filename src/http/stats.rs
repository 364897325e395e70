use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::app::AppState;
use crate::db;
use crate::error::ApiResult;
use crate::http::guard::RequireRead;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/stats", get(get_stats))
}

async fn get_stats(
    State(state): State<AppState>,
    _caller: RequireRead,
) -> ApiResult<Json<db::detections::Stats>> {
    let mut conn = state.acquire().await?;
    Ok(Json(db::detections::stats(&mut conn).await?))
}
