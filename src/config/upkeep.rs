//! `retention.*` and `maintenance.*`: old months dropped, backups and volumes watched.

use std::path::PathBuf;

use super::{comma_list, invalid, ConfigError};

section! {
    pub struct RetentionSettings {
        /// Whole UTC months of detections kept before the current one; older monthly partitions
        /// are dropped. 0 keeps everything.
        months: u32 = 0,
        /// How often retention is applied (by `serve` when its role may drop partitions, and by
        /// `shadowcheck maintenance`).
        interval_secs: u64 = 3_600,
    }
}

impl RetentionSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval_secs < 60 {
            return Err(invalid("retention.interval_secs", "must be at least 60"));
        }
        if self.months > 1_200 {
            return Err(invalid(
                "retention.months",
                "must be at most 1200 (0 keeps everything)",
            ));
        }
        Ok(())
    }
}

section! {
    pub struct MaintenanceSettings {
        /// Where `scripts/backup` writes its dumps; the newest verified one is reported as
        /// `shadowcheck_backup_last_success_timestamp_seconds` by `shadowcheck maintenance`.
        backup_dir: Option<PathBuf> = None,
        /// `name=path` pairs whose filesystem size and free space are reported
        /// (`shadowcheck_volume_size_bytes`, `shadowcheck_volume_free_bytes`).
        #[serde(deserialize_with = "comma_list")]
        volumes: Vec<String> = Vec::new(),
    }
}

impl MaintenanceSettings {
    /// The volumes as `(name, path)`; `validate` guarantees the form.
    pub fn volume_paths(&self) -> Vec<(String, PathBuf)> {
        self.volumes
            .iter()
            .filter_map(|v| v.split_once('='))
            .map(|(name, path)| (name.trim().to_owned(), PathBuf::from(path.trim())))
            .collect()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for volume in &self.volumes {
            let well_formed = volume.split_once('=').is_some_and(|(name, path)| {
                !name.trim().is_empty() && path.trim().starts_with('/')
            });
            if !well_formed {
                return Err(invalid(
                    "maintenance.volumes",
                    "entries are name=/absolute/path, separated by commas",
                ));
            }
        }
        Ok(())
    }
}
