//! API keys and scopes: generation, hashing, verification (with a short cache), and the
//! per-key rate limit. Keys are shown once and stored only as SHA-256.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthSettings, RateLimitSettings};
use crate::db;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ingest,
    Read,
    /// The detector's decisions: the allow-list and safe zones (an operator's, not a capture
    /// device's).
    Operator,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Operator, Scope::Admin];
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Operator => "operator",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingest" => Ok(Scope::Ingest),
            "read" => Ok(Scope::Read),
            "operator" => Ok(Scope::Operator),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope `{other}` (ingest, read, operator, admin)"
            )),
        }
    }
}

/// Who is calling, once their key checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `None` for the bootstrap key from the configuration.
    pub key_id: Option<i64>,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// A stable id of the caller: its key's id (names can be reused after a revocation).
    pub fn caller_id(&self) -> String {
        // Without an id: the configured bootstrap key, or anonymous readers.
        self.key_id
            .map_or_else(|| self.name.clone(), |id| format!("key:{id}"))
    }

    /// `admin` includes every other scope.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// A freshly generated key: the secret (shown once), its listing prefix and its hash.
pub struct NewKey {
    pub secret: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

const KEY_PREFIX: &str = "sc_";

impl NewKey {
    /// `sc_` + 43 base62 characters: about 256 bits of randomness.
    pub fn generate() -> Self {
        let secret = format!(
            "{KEY_PREFIX}{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), 43)
        );
        let prefix = secret.chars().take(KEY_PREFIX.len() + 8).collect();
        let hash = hash_key(&secret);
        Self {
            secret,
            prefix,
            hash,
        }
    }
}

pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
    Revoked,
    Scope,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Revoked => "revoked",
            AuthFailure::Scope => "scope",
        }
    }
}

#[derive(Debug)]
pub enum AuthError {
    Failed(AuthFailure),
    Database(sqlx::Error),
}

/// Verifies keys against the bootstrap key and the database, remembering good keys briefly.
pub struct Authenticator {
    bootstrap: Option<[u8; 32]>,
    pub anonymous_read: bool,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    /// In-flight requests per caller, when bounded: the bound, and each caller's semaphore.
    slots: Option<(usize, Mutex<CallerSlots>)>,
    /// Per caller: permits for requests that may use the database, sized to its share of the
    /// pool. Beyond it a caller's requests wait for its own permits, not everyone's connections.
    db_share: (usize, Mutex<CallerSlots>),
}

type CallerSlots = HashMap<String, Arc<tokio::sync::Semaphore>>;

/// Held while a request is in progress; frees the caller's slot when dropped.
pub type Slot = tokio::sync::OwnedSemaphorePermit;

/// Upper bound on cached keys; the cache is cleared when it is reached.
const CACHE_LIMIT: usize = 10_000;

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl Authenticator {
    /// `connections_per_key`: the database share of one key (see `db_share`).
    pub fn new(
        settings: &AuthSettings,
        limits: &RateLimitSettings,
        connections_per_key: usize,
    ) -> Self {
        Self {
            bootstrap: settings
                .bootstrap_key
                .as_ref()
                .map(|k| hash_key(k.expose())),
            anonymous_read: settings.anonymous_read || settings.public_read,
            ttl: Duration::from_secs(settings.cache_ttl_secs),
            cache: Mutex::new(HashMap::new()),
            per_key: limits.enabled.then(|| {
                RateLimiter::keyed(quota(limits.per_key_per_second, limits.per_key_burst))
            }),
            slots: (settings.max_concurrent_per_key > 0)
                .then(|| (settings.max_concurrent_per_key, Mutex::new(HashMap::new()))),
            db_share: (connections_per_key.max(1), Mutex::new(HashMap::new())),
        }
    }

    /// The principal for a presented key, or why it was refused.
    pub async fn verify(&self, pool: &db::Pool, presented: &str) -> Result<Principal, AuthError> {
        let hash = hash_key(presented);
        if let Some(bootstrap) = &self.bootstrap {
            if bool::from(bootstrap.ct_eq(&hash)) {
                return Ok(Principal {
                    key_id: None,
                    name: "bootstrap".into(),
                    scopes: Scope::ALL.to_vec(),
                });
            }
        }
        if let Ok(cache) = self.cache.lock() {
            if let Some((principal, at)) = cache.get(&hash) {
                if at.elapsed() < self.ttl {
                    return Ok(principal.clone());
                }
            }
        }
        let mut conn = pool.acquire().await.map_err(AuthError::Database)?;
        let found = db::observe("find_api_key", db::keys::find_by_hash(&mut *conn, &hash))
            .await
            .map_err(AuthError::Database)?;
        let Some((record, stored)) = found else {
            return Err(AuthError::Failed(AuthFailure::Invalid));
        };
        // The lookup was by hash already; compare again without early exit all the same.
        if !bool::from(stored.as_slice().ct_eq(&hash)) {
            return Err(AuthError::Failed(AuthFailure::Invalid));
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::Failed(AuthFailure::Revoked));
        }
        let principal = Principal {
            key_id: Some(record.id),
            name: record.name.clone(),
            scopes: record
                .scopes
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        // Best effort: a failed touch must not refuse a valid key.
        if db::keys::touch(&mut *conn, record.id).await.is_ok() {
            let _ = conn.commit().await;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(hash, (principal.clone(), Instant::now()));
        }
        Ok(principal)
    }

    /// `Err(wait)` when this key has used up its burst.
    pub fn check_rate(&self, principal: &Principal) -> Result<(), Duration> {
        let Some(limiter) = &self.per_key else {
            return Ok(());
        };
        limiter
            .check_key(&principal.name)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// One of the caller's database permits, waiting at most `wait` for one of its own requests
    /// to finish; `None` when the caller's whole share stayed in use that long.
    pub async fn db_share(&self, principal: &Principal, wait: Duration) -> Option<Slot> {
        let (max, shares) = &self.db_share;
        let semaphore = semaphore_for(shares, *max, principal)?;
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// One of the caller's request slots, or `None` when all are in use (`Some(None)`: unbounded).
    pub fn enter(&self, principal: &Principal) -> Option<Option<Slot>> {
        let Some((max, slots)) = &self.slots else {
            return Some(None);
        };
        let semaphore = semaphore_for(slots, *max, principal)?;
        semaphore.try_acquire_owned().ok().map(Some)
    }

    /// Forgets idle rate-limit and slot state so memory stays bounded however many keys are seen.
    pub fn prune(&self) {
        if let Some(limiter) = &self.per_key {
            limiter.retain_recent();
        }
        if let Some((max, slots)) = &self.slots {
            forget_idle(slots, *max);
        }
        let (max, shares) = &self.db_share;
        forget_idle(shares, *max);
    }
}

/// The caller's semaphore of `max` permits in `map`, made on first use.
fn semaphore_for(
    map: &Mutex<CallerSlots>,
    max: usize,
    principal: &Principal,
) -> Option<Arc<tokio::sync::Semaphore>> {
    let mut map = map.lock().ok()?;
    Some(Arc::clone(map.entry(principal.caller_id()).or_insert_with(
        || Arc::new(tokio::sync::Semaphore::new(max)),
    )))
}

/// Drops the semaphores nobody holds a permit of.
/// At most `max` turns per caller at once (a key's exports), each returned when dropped.
pub struct PerCaller {
    max: usize,
    slots: Mutex<CallerSlots>,
}

impl PerCaller {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A turn for `principal`, or `None` when it holds all of its turns.
    pub fn try_enter(&self, principal: &Principal) -> Option<Slot> {
        semaphore_for(&self.slots, self.max, principal)?
            .try_acquire_owned()
            .ok()
    }

    /// Forgets callers holding no turn, so memory stays bounded.
    pub fn prune(&self) {
        forget_idle(&self.slots, self.max);
    }
}

fn forget_idle(map: &Mutex<CallerSlots>, max: usize) {
    if let Ok(mut map) = map.lock() {
        map.retain(|_, s| s.available_permits() < max);
    }
}

/// Per-client-address limiter (applied before authentication).
pub struct ClientLimiter {
    limiter: DefaultKeyedRateLimiter<std::net::IpAddr>,
}

impl ClientLimiter {
    pub fn new(limits: &RateLimitSettings) -> Option<Arc<Self>> {
        limits.enabled.then(|| {
            Arc::new(Self {
                limiter: RateLimiter::keyed(quota(
                    limits.per_client_per_second,
                    limits.per_client_burst,
                )),
            })
        })
    }

    pub fn check(&self, ip: std::net::IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    pub fn prune(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_random_secrets_kept_as_hashes() {
        let a = NewKey::generate();
        let b = NewKey::generate();
        assert!(a.secret.starts_with("sc_") && a.secret.len() == 46);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash_key(&a.secret));
        assert!(a.secret.starts_with(&a.prefix) && a.prefix.len() == 11);
    }

    #[test]
    fn admin_implies_every_scope() {
        let admin = Principal {
            key_id: Some(1),
            name: "a".into(),
            scopes: vec![Scope::Admin],
        };
        assert!(Scope::ALL.iter().all(|s| admin.allows(*s)));
        let reader = Principal {
            key_id: Some(2),
            name: "r".into(),
            scopes: vec![Scope::Read],
        };
        assert!(reader.allows(Scope::Read) && !reader.allows(Scope::Ingest));
    }
}
