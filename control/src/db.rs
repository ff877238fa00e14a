//! Persistence of events: SQLite (embedded default) or PostgreSQL (a cluster), one code path
//! through `sqlx`'s `Any` driver, with the versioned migrations of `control/migrations`.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};
use weir_config::{
    validate_event, ConfigError, EventOptions, EventSettings, LadderSettings, StreamKey,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database answered with an error, or could not be reached.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored record does not parse (written by a newer weir, or edited by hand).
    #[error("stored event {id:?} is unreadable: {reason}")]
    Corrupt {
        /// The event id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// One event as stored: its settings document.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRecord {
    /// The event id (URL component).
    pub id: String,
    /// A title for operators.
    #[serde(default)]
    pub title: String,
    /// A description for operators.
    #[serde(default)]
    pub description: String,
    /// SHA-256 of the primary stream key, hex.
    pub stream_key_sha256: String,
    /// SHA-256 of the backup stream key, hex, if the event has one.
    #[serde(default)]
    pub backup_stream_key_sha256: Option<String>,
    /// Ladder, LL-HLS, SRT passphrase, ingest bound, failover timing.
    #[serde(default)]
    pub options: EventOptions,
    /// Ended by the operator: publishes are refused until it is started again.
    #[serde(default)]
    pub ended: bool,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it was last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

impl EventRecord {
    /// The record of a validated event from the configuration file.
    pub fn from_settings(settings: &EventSettings, now_ms: u64) -> EventRecord {
        EventRecord {
            id: settings.id.clone(),
            title: String::new(),
            description: String::new(),
            stream_key_sha256: settings.stream_key.digest_hex(),
            backup_stream_key_sha256: settings.backup_stream_key.as_ref().map(|k| k.digest_hex()),
            options: settings.options.clone(),
            ended: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// The settings the record describes.
    ///
    /// # Errors
    /// [`ConfigError`] if a value is out of range or a ladder is unknown.
    pub fn settings(&self, ladders: &[LadderSettings]) -> Result<EventSettings, ConfigError> {
        let key = |hex: &str| {
            StreamKey::from_digest_hex(hex)
                .ok_or_else(|| ConfigError::Invalid(format!("events.stream_key of {:?}", self.id)))
        };
        let primary = key(&self.stream_key_sha256)?;
        let backup = self
            .backup_stream_key_sha256
            .as_deref()
            .map(key)
            .transpose()?;
        validate_event(&self.id, primary, backup, &self.options, ladders)
    }
}

/// An admin token made through the API, as stored.
#[derive(Clone, Debug)]
pub struct StoredToken {
    /// Its id (not secret): `tok_` and 16 hex digits.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// When it was made, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// The event database.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    }
}

impl Database {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://...`) and applies the
    /// migrations not yet applied.
    ///
    /// # Errors
    /// [`DbError`] if the database cannot be reached or migrated.
    pub async fn open(url: &str) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(if url.starts_with("sqlite:") { 1 } else { 8 })
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Database { pool })
    }

    /// Every event, by id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn list(&self) -> Result<Vec<EventRecord>, DbError> {
        let rows = sqlx::query("SELECT id, record FROM events ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let text: String = r.try_get("record")?;
                serde_json::from_str(&text).map_err(|e| corrupt(&id, e))
            })
            .collect()
    }

    /// One event.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn get(&self, id: &str) -> Result<Option<EventRecord>, DbError> {
        let row = sqlx::query("SELECT record FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let text: String = r.try_get("record")?;
            serde_json::from_str(&text).map_err(|e| corrupt(id, e))
        })
        .transpose()
    }

    /// Stores a new event; `false` if one with its id exists (nothing changed).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn insert(&self, record: &EventRecord) -> Result<bool, DbError> {
        let text = serde_json::to_string(record).map_err(|e| corrupt(&record.id, e))?;
        let done = sqlx::query(
            "INSERT INTO events (id, record, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&record.id)
        .bind(text)
        .bind(record.created_at_ms as i64)
        .bind(record.updated_at_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a stored event; `false` if there is none with its id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn update(&self, record: &EventRecord) -> Result<bool, DbError> {
        let text = serde_json::to_string(record).map_err(|e| corrupt(&record.id, e))?;
        let done = sqlx::query("UPDATE events SET record = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(text)
            .bind(record.updated_at_ms as i64)
            .bind(&record.id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores an admin token made through the API (its digest only).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn insert_token(&self, token: &StoredToken) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO admin_tokens (id, name, sha256, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.sha256)
        .bind(token.created_at_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The admin tokens made through the API, oldest first.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn tokens(&self) -> Result<Vec<StoredToken>, DbError> {
        let rows = sqlx::query(
            "SELECT id, name, sha256, created_at_ms FROM admin_tokens ORDER BY created_at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredToken {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    sha256: r.try_get("sha256")?,
                    created_at_ms: r.try_get::<i64, _>("created_at_ms")? as u64,
                })
            })
            .collect()
    }

    /// Deletes an admin token made through the API; `false` if there was none.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn delete_token(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM admin_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes an event; `false` if there was none.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn delete(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM events WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, key: &str) -> EventRecord {
        EventRecord {
            id: id.into(),
            title: "t".into(),
            description: String::new(),
            stream_key_sha256: StreamKey::new(key).digest_hex(),
            backup_stream_key_sha256: None,
            options: EventOptions {
                ladder: Some("passthrough".into()),
                ..EventOptions::default()
            },
            ended: false,
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn stores_events_in_sqlite() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        assert!(db.insert(&record("b", "key-b-0001")).await.unwrap());
        assert!(db.insert(&record("a", "key-a-0001")).await.unwrap());
        assert!(
            !db.insert(&record("a", "other-key-1")).await.unwrap(),
            "ids are unique"
        );
        let ids: Vec<String> = db.list().await.unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a", "b"]);
        let mut a = db.get("a").await.unwrap().unwrap();
        assert_eq!(
            a.stream_key_sha256,
            StreamKey::new("key-a-0001").digest_hex()
        );
        a.title = "changed".into();
        a.updated_at_ms = 2;
        assert!(db.update(&a).await.unwrap());
        assert_eq!(db.get("a").await.unwrap().unwrap().title, "changed");
        assert!(db.delete("a").await.unwrap());
        assert!(!db.delete("a").await.unwrap());
        assert!(db.get("a").await.unwrap().is_none());
        assert!(!db.update(&a).await.unwrap());

        let token = StoredToken {
            id: "tok_1".into(),
            name: "ci".into(),
            sha256: "ab".repeat(32),
            created_at_ms: 5,
        };
        db.insert_token(&token).await.unwrap();
        let tokens = db.tokens().await.unwrap();
        assert_eq!((tokens.len(), tokens[0].name.as_str()), (1, "ci"));
        assert!(db.insert_token(&token).await.is_err(), "ids are unique");
        assert!(db.delete_token("tok_1").await.unwrap());
        assert!(db.tokens().await.unwrap().is_empty());
    }

    #[test]
    fn a_record_gives_back_its_settings() {
        let ladders = weir_config::Config::embedded().ladders;
        let r = record("ev", "key-ev-0001");
        let s = r.settings(&ladders).unwrap();
        assert!(s.stream_key.matches("key-ev-0001"));
        assert!(s.ladder.is_passthrough());
        let mut bad = r.clone();
        bad.options.ladder = Some("missing".into());
        assert!(bad.settings(&ladders).is_err());
        bad = r;
        bad.stream_key_sha256 = "not hex".into();
        assert!(bad.settings(&ladders).is_err());
    }
}
