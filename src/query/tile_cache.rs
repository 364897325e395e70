//! Built vector tiles kept in memory, bounded in bytes (oldest dropped first). A tile is served
//! from here until this process commits detections in its area or its time to live runs out
//! (which covers what this process cannot see: another replica's ingest, the detector's
//! scores). Tiles of the whole world's zooms (up to `WORLD_ZOOMS`) are counted cells that any
//! commit anywhere would invalidate: they are rebuilt by their time to live only. A cold tile
//! asked for by many clients at once is built once (`get_or_build`), the others wait for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::domain::tile::TileCoord;
use crate::domain::BBox;
use crate::ingest::IngestActivity;

/// A tile of one layer under one set of filters (their canonical query string).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileKey {
    pub layer: &'static str,
    pub tile: TileCoord,
    pub filters: String,
}

/// A built tile: its bytes (empty when nothing is there) and its entity tag.
#[derive(Clone, Debug)]
pub struct CachedTile {
    pub bytes: Bytes,
    /// The same bytes gzipped, for clients that accept it (compressed once, when built).
    pub gzip: Bytes,
    pub etag: String,
}

impl CachedTile {
    /// Memory held: both encodings.
    fn size(&self) -> usize {
        self.bytes.len() + self.gzip.len()
    }
}

struct Entry {
    tile: CachedTile,
    /// When its query started: commits from then on may be missing from it.
    built_from: Instant,
    area: BBox,
}

/// Zooms whose tiles span continents: every commit touches them, so they expire by time only.
pub const WORLD_ZOOMS: u8 = 4;

#[derive(Default)]
struct Inner {
    entries: HashMap<TileKey, Entry>,
    /// Tiles being built, and who waits for them.
    building: HashMap<TileKey, Arc<tokio::sync::Notify>>,
    /// Insertion order, for eviction; a key may appear again after it was rebuilt.
    order: VecDeque<(TileKey, Instant)>,
    bytes: usize,
}

pub struct TileCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    ttl: Duration,
    ingest: Arc<IngestActivity>,
}

/// Bytes an entry costs beyond its tile: key, tag and bookkeeping.
const OVERHEAD: usize = 256;

impl TileCache {
    pub fn new(max_bytes: usize, ttl: Duration, ingest: Arc<IngestActivity>) -> Self {
        Self {
            inner: Mutex::default(),
            max_bytes,
            ttl,
            ingest,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tile, when it is cached and still current.
    pub fn get(&self, key: &TileKey) -> Option<CachedTile> {
        let mut inner = self.lock();
        let entry = inner.entries.get(key)?;
        let current = entry.built_from.elapsed() < self.ttl
            && (key.tile.z() <= WORLD_ZOOMS
                || !self.ingest.changed_since(entry.built_from, &entry.area));
        if current {
            return Some(entry.tile.clone());
        }
        if let Some(stale) = inner.entries.remove(key) {
            inner.bytes -= stale.tile.size() + OVERHEAD;
        }
        None
    }

    /// Keeps a tile built by a query that started at `built_from`, covering `area` (its
    /// buffer included).
    pub fn put(&self, key: TileKey, tile: CachedTile, built_from: Instant, area: BBox) {
        let size = tile.size() + OVERHEAD;
        if size > self.max_bytes / 4 {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.insert(
            key.clone(),
            Entry {
                tile,
                built_from,
                area,
            },
        ) {
            inner.bytes -= old.tile.size() + OVERHEAD;
        }
        inner.bytes += size;
        inner.order.push_back((key, built_from));
        while inner.bytes > self.max_bytes {
            let Some((key, at)) = inner.order.pop_front() else {
                break;
            };
            // Only the entry this order record was made for (not a rebuilt one).
            if inner.entries.get(&key).is_some_and(|e| e.built_from == at) {
                if let Some(old) = inner.entries.remove(&key) {
                    inner.bytes -= old.tile.size() + OVERHEAD;
                }
            }
        }
        // Order records of replaced or expired entries: swept once they outnumber the live ones
        // (amortised constant per put).
        if inner.order.len() > 2 * inner.entries.len() + 16 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(k, at)| entries.get(k).is_some_and(|e| e.built_from == *at));
        }
        drop(inner);
        self.ingest.forget_before(self.ttl);
    }

    /// The tile from the cache, or built by `build` (which returns it with when its query
    /// started and the area it covers) by exactly one of the callers asking for it at once; the
    /// others wait and take the result from the cache. `true` when this call built it.
    pub async fn get_or_build<F, Fut, E>(
        &self,
        key: &TileKey,
        build: F,
    ) -> Result<(CachedTile, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(CachedTile, Instant, BBox), E>>,
    {
        let mut build = Some(build);
        loop {
            if let Some(hit) = self.get(key) {
                return Ok((hit, false));
            }
            let waiting = {
                let mut inner = self.lock();
                match inner.building.get(key) {
                    Some(notify) => Some(Arc::clone(notify)),
                    None => {
                        inner
                            .building
                            .insert(key.clone(), Arc::new(tokio::sync::Notify::new()));
                        None
                    }
                }
            };
            match (waiting, build.take()) {
                (Some(notify), still) => {
                    build = still;
                    let notified = notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    // Built (or failed) between our look and our registration: look again.
                    if self.lock().building.contains_key(key) {
                        notified.await;
                    }
                }
                (None, Some(build)) => {
                    // Whatever happens to the build, the waiters are released.
                    let _done = Building { cache: self, key };
                    let (tile, built_from, area) = build().await?;
                    self.put(key.clone(), tile.clone(), built_from, area);
                    return Ok((tile, true));
                }
                (None, None) => unreachable!("a build is taken only to run it once"),
            }
        }
    }

    /// Bytes held (tiles and overhead).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Ends a build: its key leaves `building` and its waiters wake (also when it failed).
struct Building<'a> {
    cache: &'a TileCache,
    key: &'a TileKey,
}

impl Drop for Building<'_> {
    fn drop(&mut self) {
        if let Some(notify) = self.cache.lock().building.remove(self.key) {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(x: u32) -> TileKey {
        TileKey {
            layer: "detections",
            tile: TileCoord::new(10, x, 0).expect("valid"),
            filters: String::new(),
        }
    }

    fn tile(len: usize) -> CachedTile {
        CachedTile {
            bytes: Bytes::from(vec![1u8; len]),
            gzip: Bytes::new(),
            etag: "\"t\"".into(),
        }
    }

    #[test]
    fn only_commits_in_a_tiles_area_invalidate_it() {
        let ingest = Arc::new(IngestActivity::default());
        let cache = TileCache::new(1 << 20, Duration::from_secs(60), Arc::clone(&ingest));
        let k = key(1);
        let area = k.tile.bbox();
        cache.put(k.clone(), tile(10), Instant::now(), area);
        assert!(cache.get(&k).is_some());
        let far = BBox {
            min_lon: 100.0,
            min_lat: -10.0,
            max_lon: 101.0,
            max_lat: -9.0,
        };
        ingest.record(far);
        assert!(cache.get(&k).is_some(), "a commit elsewhere keeps the tile");
        let inside = BBox {
            min_lon: area.min_lon + 0.01,
            min_lat: area.min_lat + 0.01,
            max_lon: area.min_lon + 0.02,
            max_lat: area.min_lat + 0.02,
        };
        ingest.record(inside);
        assert!(cache.get(&k).is_none(), "a commit inside drops it");
        assert_eq!(cache.bytes(), 0);
    }

    #[tokio::test]
    async fn a_tile_asked_for_at_once_is_built_once() {
        let cache = Arc::new(TileCache::new(
            1 << 20,
            Duration::from_secs(60),
            Arc::default(),
        ));
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let k = key(3);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, builds, k) = (Arc::clone(&cache), Arc::clone(&builds), k.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_build(&k, || async {
                            builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, ()>((tile(10), Instant::now(), k.tile.bbox()))
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.expect("join").is_ok());
        }
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn world_zoom_tiles_expire_by_time_not_by_commits() {
        let ingest = Arc::new(IngestActivity::default());
        let cache = TileCache::new(1 << 20, Duration::from_secs(60), Arc::clone(&ingest));
        let world = TileKey {
            layer: "detections",
            tile: TileCoord::new(0, 0, 0).expect("valid"),
            filters: String::new(),
        };
        cache.put(world.clone(), tile(10), Instant::now(), world.tile.bbox());
        ingest.record(world.tile.bbox());
        assert!(cache.get(&world).is_some());
    }

    #[test]
    fn the_cache_evicts_oldest_first_by_size_then_by_age() {
        let ingest = Arc::new(IngestActivity::default());
        let cache = TileCache::new(4 * (1000 + OVERHEAD), Duration::from_secs(60), ingest);
        for x in 0..6 {
            let k = key(x);
            let area = k.tile.bbox();
            cache.put(k, tile(1000), Instant::now(), area);
        }
        assert!(cache.bytes() <= 4 * (1000 + OVERHEAD));
        assert!(cache.get(&key(0)).is_none() && cache.get(&key(1)).is_none());
        assert!(cache.get(&key(5)).is_some());

        let short = TileCache::new(1 << 20, Duration::ZERO, Arc::default());
        let k = key(1);
        let area = k.tile.bbox();
        short.put(k.clone(), tile(10), Instant::now(), area);
        assert!(short.get(&k).is_none(), "expired");
    }
}
