//! Answers computed over a whole table (the stats, the data's extent), kept for a while: a
//! request storm costs one computation, not one per request. Each is computed by one caller at
//! a time (the others wait for its answer), dropped when this process commits detections, and
//! recomputed after its time to live in any case (other replicas' ingest).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::BBox;
use crate::ingest::IngestActivity;

const WORLD: BBox = BBox {
    min_lon: -180.0,
    min_lat: -90.0,
    max_lon: 180.0,
    max_lat: 90.0,
};

pub struct Summary<T> {
    ttl: Duration,
    ingest: Arc<IngestActivity>,
    /// Holding the lock is computing it: one at a time.
    slot: tokio::sync::Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Summary<T> {
    pub fn new(ttl: Duration, ingest: Arc<IngestActivity>) -> Self {
        Self {
            ttl,
            ingest,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The kept answer while current, else `compute`'s (kept from when it started).
    pub async fn get_or_compute<F, Fut, E>(&self, compute: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref() {
            if at.elapsed() < self.ttl && !self.ingest.changed_since(*at, &WORLD) {
                return Ok(value.clone());
            }
        }
        let started = Instant::now();
        let value = compute().await?;
        *slot = Some((started, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_until_a_commit_here_or_its_time_runs_out() {
        let ingest = Arc::new(IngestActivity::default());
        let summary = Summary::new(Duration::from_secs(60), Arc::clone(&ingest));
        let mut computed = 0;
        for _ in 0..3 {
            let v = summary
                .get_or_compute(|| async {
                    computed += 1;
                    Ok::<_, ()>(computed)
                })
                .await;
            assert_eq!(v, Ok(1));
        }
        ingest.record(BBox {
            min_lon: 1.0,
            min_lat: 1.0,
            max_lon: 2.0,
            max_lat: 2.0,
        });
        let v = summary.get_or_compute(|| async { Ok::<_, ()>(2) }).await;
        assert_eq!(v, Ok(2), "a commit drops it");
        let expired = Summary::new(Duration::ZERO, Arc::default());
        let _ = expired.get_or_compute(|| async { Ok::<_, ()>(1) }).await;
        assert_eq!(
            expired.get_or_compute(|| async { Ok::<_, ()>(3) }).await,
            Ok(3)
        );
    }
}
