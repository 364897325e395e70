//! `map.*`: vector tiles, their cache, and the page's basemap.

use super::{invalid, is_http_url, ConfigError};

/// OpenFreeMap's "liberty" style: OpenStreetMap data, free to use without a key or account
/// (attribution is in the style).
pub const DEFAULT_BASEMAP_STYLE: &str = "https://tiles.openfreemap.org/styles/liberty";

section! {
    pub struct MapSettings {
        /// A tile with more matching points than this is drawn as grid cells with counts.
        tile_max_points: u32 = 2_000,
        /// Cells a side of an aggregated tile (its 4096 units divided into this many).
        tile_grid: u32 = 64,
        /// Memory for built tiles, shared by every layer and filter; oldest dropped first.
        tile_cache_bytes: usize = 64 << 20,
        /// A cached tile is rebuilt after this long even when this process stored nothing
        /// there (another replica's ingest, the detector's scores).
        tile_cache_ttl_secs: u64 = 30,
        /// Basemap for the page at `/`: a MapLibre style URL the browser loads (the default,
        /// OpenFreeMap's, needs no account or key). When it cannot be loaded (offline), and
        /// when this is empty, the page draws the offline basemap built into the binary.
        basemap_style_url: String = String::from(DEFAULT_BASEMAP_STYLE),
        /// A PMTiles basemap (one file: a city or a country, vector in the Protomaps schema or
        /// raster) served by this binary at `/map/basemap.pmtiles` with range requests, drawn
        /// instead of the online style: a street map with no internet. Empty: none.
        pmtiles_path: String = String::new(),
    }
}

impl MapSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.tile_max_points) {
            return Err(invalid(
                "map.tile_max_points",
                "must be between 1 and 100000",
            ));
        }
        if ![8, 16, 32, 64, 128, 256, 512].contains(&self.tile_grid) {
            return Err(invalid(
                "map.tile_grid",
                "must be one of 8, 16, 32, 64, 128, 256, 512",
            ));
        }
        if !self.pmtiles_path.is_empty() {
            pmtiles_header(std::path::Path::new(&self.pmtiles_path))
                .map_err(|why| invalid("map.pmtiles_path", why))?;
        }
        let style = &self.basemap_style_url;
        if !(style.is_empty() || is_http_url(style)) {
            return Err(invalid(
                "map.basemap_style_url",
                "must be an http(s) URL or empty",
            ));
        }
        Ok(())
    }
}

/// Checks the file is PMTiles version 3 (its first 8 bytes), so a wrong path is a start-up
/// error rather than a blank map.
fn pmtiles_header(path: &std::path::Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match head {
        [b'P', b'M', b'T', b'i', b'l', b'e', b's', 3] => Ok(()),
        [b'P', b'M', b'T', b'i', b'l', b'e', b's', v] => Err(format!(
            "{} is PMTiles version {v}; version 3 is needed",
            path.display()
        )),
        _ => Err(format!("{} is not a PMTiles file", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pmtiles_v3_file_is_a_basemap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        };
        assert!(pmtiles_header(&write("ok.pmtiles", b"PMTiles\x03rest")).is_ok());
        let v2 = pmtiles_header(&write("v2.pmtiles", b"PMTiles\x02rest")).expect_err("v2");
        assert!(v2.contains("version 2"), "{v2}");
        let other =
            pmtiles_header(&write("x.mbtiles", b"SQLite format 3")).expect_err("not PMTiles");
        assert!(other.contains("not a PMTiles file"), "{other}");
        assert!(pmtiles_header(&dir.path().join("missing")).is_err());
    }
}
