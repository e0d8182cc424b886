//! Read model `companies`: tenants and their API keys. Owns tables `companies`, `api_keys`
//! and the in-memory [`ApiKeyCache`] authentication reads on every request.

use aggregates::company::{Company, CompanyEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use sqlx::{PgConnection, PgExecutor, Row};
use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use crate::cache::InvalidatingCache;
use crate::log::LogEvent;
use crate::runtime::{ProjectionError, Projector, Subscription};

pub const NAME: &str = "companies";
/// Other processes drop the API keys named here (comma-separated; `*` for all).
pub const KEYS_CHANNEL: &str = "kairos_api_keys";

pub struct CompaniesProjector {
    keys: Arc<ApiKeyCache>,
}

impl CompaniesProjector {
    pub fn new(keys: Arc<ApiKeyCache>) -> Self {
        Self { keys }
    }
}

/// Key ids an event of the batch changed.
fn changed_keys(events: &[LogEvent]) -> Vec<Uuid> {
    events
        .iter()
        .filter(|e| e.aggregate_type == Company::TYPE)
        .filter_map(|e| match e.decode::<CompanyEvent>() {
            Ok(
                CompanyEvent::ApiKeyIssued { key_id, .. }
                | CompanyEvent::ApiKeyRevoked { key_id, .. },
            ) => Some(key_id),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl Projector for CompaniesProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["companies", "api_keys"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == Company::TYPE) {
            match event.decode::<CompanyEvent>()? {
                CompanyEvent::CompanyCreated {
                    company_id,
                    name,
                    owner_user_id,
                    created_at,
                } => {
                    sqlx::query(
                        "INSERT INTO companies (company_id, name, owner_user_id, created_at) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (company_id) DO UPDATE SET name = EXCLUDED.name, \
                         owner_user_id = EXCLUDED.owner_user_id, created_at = EXCLUDED.created_at",
                    )
                    .bind(company_id)
                    .bind(name.as_str())
                    .bind(owner_user_id)
                    .bind(created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                CompanyEvent::ApiKeyIssued {
                    key_id,
                    secret_hash,
                    issued_at,
                    expires_at,
                } => {
                    let company_id: Uuid = event.aggregate_id.parse().map_err(|_| {
                        ProjectionError::Invalid(format!("company id {:?}", event.aggregate_id))
                    })?;
                    let hash = hex::decode(&secret_hash).map_err(|_| {
                        ProjectionError::Invalid(format!("key {key_id}: secret hash is not hex"))
                    })?;
                    sqlx::query(
                        "INSERT INTO api_keys (key_id, company_id, secret_hash, issued_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (key_id) DO UPDATE SET company_id = EXCLUDED.company_id, \
                         secret_hash = EXCLUDED.secret_hash, issued_at = EXCLUDED.issued_at, \
                         expires_at = EXCLUDED.expires_at, revoked_at = NULL",
                    )
                    .bind(key_id)
                    .bind(company_id)
                    .bind(hash)
                    .bind(issued_at)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await?;
                }
                CompanyEvent::ApiKeyRevoked { key_id, revoked_at } => {
                    sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1")
                        .bind(key_id)
                        .bind(revoked_at)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        let keys = changed_keys(events);
        for chunk in keys.chunks(150) {
            let payload = self.keys.notice(chunk);
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(KEYS_CHANNEL)
                .bind(payload)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    fn committed(&self, events: &[LogEvent]) {
        self.keys.invalidate(changed_keys(events));
    }

    fn abandoned(&self, events: &[LogEvent]) {
        self.keys.invalidate(changed_keys(events));
    }

    /// Company events hold no personal fields; the users' events it skips need no opening.
    fn needs_personal_data(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompanyRow {
    pub company_id: Uuid,
    pub name: String,
    pub owner_user_id: Uuid,
    pub created_at: DateTime<Utc>,
}

pub async fn find_company(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
) -> Result<Option<CompanyRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT company_id, name, owner_user_id, created_at FROM companies WHERE company_id = $1",
    )
    .bind(company_id)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(CompanyRow {
            company_id: row.try_get("company_id")?,
            name: row.try_get("name")?,
            owner_user_id: row.try_get("owner_user_id")?,
            created_at: row.try_get("created_at")?,
        })
    })
    .transpose()
}

/// The oldest company, if any (`kairos demo` creates one only on an empty installation).
pub async fn first_company_id(db: impl PgExecutor<'_>) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT company_id FROM companies ORDER BY created_at LIMIT 1")
        .fetch_optional(db)
        .await
}

/// An API key as authentication needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRow {
    pub key_id: Uuid,
    pub company_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub owner_user_id: Uuid,
}

/// Verified-key lookups in memory: authentication reads a key on every request, and keys
/// change rarely. Revocation still takes effect at once (see [`crate::cache`]).
///
/// Key ids the table does not hold are remembered too (bounded), so a client repeating an
/// unknown key costs no database round trip. Both sets follow the same notices: issuing a key
/// drops its id from the unknown ones in every process, as revoking drops it from the known.
pub struct ApiKeyCache {
    keys: Arc<InvalidatingCache<Uuid, Arc<ApiKeyRow>>>,
    unknown: Arc<InvalidatingCache<Uuid, ()>>,
}

/// At most this many unknown key ids are remembered (a few MiB); beyond it an arbitrary one
/// makes room, so a flood of random ids costs a lookup each, never memory.
pub const UNKNOWN_KEY_IDS: usize = 100_000;

impl ApiKeyCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: Arc::new(InvalidatingCache::new(capacity)),
            unknown: Arc::new(InvalidatingCache::new(UNKNOWN_KEY_IDS)),
        }
    }

    pub async fn get(
        &self,
        db: impl PgExecutor<'_>,
        key_id: Uuid,
    ) -> Result<Option<Arc<ApiKeyRow>>, sqlx::Error> {
        self.get_gated(db, key_id, async { Ok::<_, sqlx::Error>(()) })
            .await
    }

    /// The key, from memory when either set knows its id; otherwise read from the table once
    /// `gate` lets it (holding what `gate` returns, a permit say, until the read is done).
    /// `gate` is not awaited at all when memory answers.
    pub async fn get_gated<G, E: From<sqlx::Error>>(
        &self,
        db: impl PgExecutor<'_>,
        key_id: Uuid,
        gate: impl Future<Output = Result<G, E>>,
    ) -> Result<Option<Arc<ApiKeyRow>>, E> {
        self.keys
            .get_or_load(key_id, async {
                let mut found = None;
                self.unknown
                    .get_or_load(key_id, async {
                        let _pass = gate.await?;
                        found = find_api_key(db, key_id).await?.map(Arc::new);
                        Ok::<_, E>(found.is_none().then_some(()))
                    })
                    .await?;
                Ok(found)
            })
            .await
    }

    /// The payload telling other processes to drop these keys.
    pub fn notice(&self, key_ids: &[Uuid]) -> String {
        self.keys.notice(key_ids)
    }

    pub fn invalidate(&self, key_ids: impl IntoIterator<Item = Uuid>) {
        let key_ids: Vec<Uuid> = key_ids.into_iter().collect();
        self.keys.invalidate(key_ids.iter().copied());
        self.unknown.invalidate(key_ids);
    }

    pub fn clear(&self) {
        self.keys.clear();
        self.unknown.clear();
    }

    /// Unknown key ids remembered now.
    pub fn unknown_len(&self) -> usize {
        self.unknown.len()
    }

    /// One subscription for both sets. The unknown set reads the notices of its own process
    /// as another's (the origin is the known set's): harmless, as the projector already
    /// dropped those ids there.
    pub fn subscription(&self) -> Subscription {
        let parse = |id: &str| Uuid::parse_str(id).ok();
        let known = self.keys.subscription(KEYS_CHANNEL, parse);
        let unknown = self.unknown.subscription(KEYS_CHANNEL, parse);
        let (known_notice, unknown_notice) = (known.on_notice, unknown.on_notice);
        let (known_unfollowed, unknown_unfollowed) = (known.on_unfollowed, unknown.on_unfollowed);
        let (known_followed, unknown_followed) = (known.on_followed, unknown.on_followed);
        Subscription {
            channel: KEYS_CHANNEL,
            on_notice: Arc::new(move |payload: &str| {
                known_notice(payload);
                unknown_notice(payload);
            }),
            on_unfollowed: Arc::new(move || {
                known_unfollowed();
                unknown_unfollowed();
            }),
            on_followed: Arc::new(move || {
                known_followed();
                unknown_followed();
            }),
        }
    }
}

/// Ids of keys not revoked, at most `limit` of them (the newest first): authentication treats
/// these as real when it bounds the work of failed attempts.
pub async fn live_key_ids(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT key_id FROM api_keys WHERE revoked_at IS NULL ORDER BY issued_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The key and its company's owner, in one round trip.
pub async fn find_api_key(
    db: impl PgExecutor<'_>,
    key_id: Uuid,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT k.key_id, k.company_id, k.secret_hash, k.expires_at, k.revoked_at, c.owner_user_id \
         FROM api_keys k JOIN companies c ON c.company_id = k.company_id WHERE k.key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(ApiKeyRow {
            key_id: row.try_get("key_id")?,
            company_id: row.try_get("company_id")?,
            secret_hash: row.try_get("secret_hash")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            owner_user_id: row.try_get("owner_user_id")?,
        })
    })
    .transpose()
}
