//! weir's control plane: the live events, persisted, changed while weir runs, and the admin
//! API that changes them.
//!
//! ```text
//! operator --HTTP /admin/v1--> api (axum, bearer token) --> Database (sqlx: SQLite | PostgreSQL)
//!                                                      \--> Registry (the running events)
//! publisher --RTMP/SRT--> ingest --EventDirectory--> Registry --> InputSelector --> Pipeline
//!                                                               (primary/backup)   (packager,
//!                                                                                   transcoder)
//! ```
//!
//! The database is the source of truth: at start the configuration file's events are seeded
//! into it (once: an event already stored is left as it is), then every stored event is
//! loaded into the [`Registry`]. The API writes the database and applies the change to the
//! registry at once: a new event accepts publishes, a deleted or re-keyed one refuses them and
//! its publishers are disconnected.

mod api;
mod audience;
mod db;
mod hooks;
mod pipeline;
mod registry;
mod status;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use weir_config::{AdminToken, Config, LadderSettings};
use weir_origin::Store;

pub use api::{
    router as admin_router, ApiDoc, CreateEvent, CreateToken, CreatedEvent, CreatedToken,
    EdgePurge, ErrorBody, EventView, Kicked, Purged, RotateKey, RotatedKey, TokenView, UpdateEvent,
};
pub use audience::EdgeViewers;
pub use db::{Database, DbError, EventRecord, StoredToken};
pub use registry::{Publisher, Registry, RegistryError};
pub use status::{EventStatus, InputStatus, RenditionStatus};

/// TLS for the control plane's own requests (purges to `https://` edges, webhooks): rustls
/// with ring, trusting the bundled Mozilla roots, or only the authorities in `ca_file`.
///
/// # Errors
/// `ca_file` cannot be read or holds no certificate.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<ureq::tls::TlsConfig> {
    use anyhow::Context;
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let Some(file) = ca_file else {
        return Ok(TlsConfig::builder().build());
    };
    let pem = std::fs::read(file).with_context(|| format!("control.ca_file {}", file.display()))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    anyhow::ensure!(
        !certs.is_empty(),
        "control.ca_file {}: no certificate in it",
        file.display()
    );
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(certs)))
        .build())
}

/// Purges an event from the edge of this process, returning the cache entries dropped.
#[derive(Clone)]
pub struct LocalPurge(pub Arc<dyn Fn(&str) -> u64 + Send + Sync>);

impl std::fmt::Debug for LocalPurge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalPurge")
    }
}

/// The control plane of one `weir serve`: the event database, the running events and who may
/// change them.
#[derive(Debug)]
pub struct Control<S: Store> {
    /// The running events (ingest's `EventDirectory`).
    pub registry: Arc<Registry<S>>,
    db: Database,
    ladders: Vec<LadderSettings>,
    admin_tokens: std::sync::RwLock<Vec<KnownToken>>,
    /// The RTMP listener's port and application, once bound (for publish URLs).
    rtmp: std::sync::OnceLock<(u16, String)>,
    /// The edges' newest reports.
    edge_reports: audience::EdgeReports,
    /// What edges must send on internal paths, if set.
    cluster_secret: Option<weir_config::ClusterSecret>,
    /// What edges must send for content keys: the cluster secret, or one made for this run
    /// (then only the edge in this process has it).
    key_secret: weir_config::ClusterSecret,
    /// The content keys of encrypted events.
    keys: Arc<weir_drm::KeyStore>,
    /// The edges a purge reaches over HTTP: `[control] edges`.
    edges: Vec<String>,
    /// The edge of this process, once bound ([`Control::set_local_edge`]): its URL and how
    /// to purge it without a request.
    local_edge: std::sync::OnceLock<(String, LocalPurge)>,
    /// TLS for the control plane's own requests ([`tls_config`]).
    pub(crate) tls: ureq::tls::TlsConfig,
}

pub use weir_config::CLUSTER_SECRET_HEADER;

/// An admin token the API accepts.
#[derive(Clone, Debug)]
pub(crate) struct KnownToken {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) token: AdminToken,
    /// From the configuration file (cannot be deleted through the API) or made by the API.
    pub(crate) from_config: bool,
    pub(crate) created_at_ms: u64,
}

/// What [`Control::open`] made besides the control plane.
#[derive(Debug)]
pub struct Opened<S: Store> {
    /// The control plane.
    pub control: Arc<Control<S>>,
    /// An admin token made at random because the configuration names none (print it for the
    /// operator; it is valid until weir stops).
    pub generated_token: Option<String>,
    /// Where the database is (the URL without credentials).
    pub database: String,
}

/// The database URL: `control.database_url`, or SQLite in `control.data_dir` (relative paths
/// are taken from `base`, the configuration file's directory).
fn database_url(config: &Config, base: &Path) -> anyhow::Result<(String, String)> {
    if let Some(url) = &config.control.database_url {
        let shown = match url.split_once('@') {
            Some((_, host)) => format!("{}…@{host}", &url[..url.find("://").map_or(0, |i| i + 3)]),
            None => url.clone(),
        };
        return Ok((url.clone(), shown));
    }
    let dir = base.join(&config.control.data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let file = dir.join("weir.db");
    let shown = file.display().to_string();
    Ok((format!("sqlite://{shown}?mode=rwc"), shown))
}

/// The content key store: `{data_dir}/keys`, keys wrapped with the configured key-encryption
/// key (or one made for this run).
fn key_store(config: &Config, base: &Path) -> anyhow::Result<weir_drm::KeyStore> {
    let kek = match &config.access.key_encryption_key {
        Some(k) => weir_drm::KeyEncryptionKey::from_bytes(k.0),
        None => weir_drm::KeyEncryptionKey::generate(),
    };
    let dir = base.join(&config.control.data_dir).join("keys");
    weir_drm::KeyStore::open(&dir, kek)
        .with_context(|| format!("opening the key store {}", dir.display()))
}

impl<S: Store> Control<S> {
    /// The secret the edge of this process sends for content keys (and, when configured,
    /// on every internal path).
    pub fn internal_secret(&self) -> weir_config::ClusterSecret {
        self.key_secret.clone()
    }

    /// The content key store.
    pub fn key_store(&self) -> &weir_drm::KeyStore {
        &self.keys
    }

    /// Tells the control plane where publishers connect over RTMP (the bound port and the
    /// application), so the API can hand out publish URLs. Only the first call counts.
    pub fn set_rtmp_endpoint(&self, port: u16, app: &str) {
        let _ = self.rtmp.set((port, app.to_string()));
    }

    /// Adds the edge of this process (`http://host:port`, as viewers reach it) to those a
    /// purge reaches: told with `purge`, in-process (its certificate, if it has one, need
    /// not name a loopback address). Only the first call counts.
    pub fn set_local_edge(&self, base: &str, purge: LocalPurge) {
        let _ = self
            .local_edge
            .set((base.trim_end_matches('/').to_string(), purge));
    }

    /// The edges a purge reaches over HTTP.
    pub(crate) fn edges(&self) -> Vec<String> {
        self.edges.clone()
    }

    /// The edge of this process and how to purge it.
    pub(crate) fn local_edge(&self) -> Option<&(String, LocalPurge)> {
        self.local_edge.get()
    }

    /// The secret the control plane presents to edges (purges).
    pub(crate) fn edge_secret(&self) -> &weir_config::ClusterSecret {
        &self.key_secret
    }

    /// Opens the database (creating and migrating it as needed), seeds the configuration
    /// file's events into it, and loads every stored event.
    ///
    /// # Errors
    /// The database cannot be opened, or a stored event is invalid under this configuration
    /// (e.g. it names a ladder the file no longer has).
    pub async fn open(config: &Config, base: &Path, store: Arc<S>) -> anyhow::Result<Opened<S>> {
        let (url, shown) = database_url(config, base)?;
        let db = Database::open(&url)
            .await
            .with_context(|| format!("opening the event database {shown}"))?;
        let now = status::unix_ms(SystemTime::now());
        for e in &config.events {
            if db.insert(&EventRecord::from_settings(e, now)).await? {
                tracing::info!(event = %e.id, "event seeded from the configuration file");
            }
        }
        let tls = tls_config(config.control.ca_file.as_deref())?;
        let hooks = Arc::new(hooks::Hooks::start(
            config.control.hooks.clone(),
            tls.clone(),
        ));
        let keys = Arc::new(key_store(config, base)?);
        let registry = Arc::new(Registry::new(
            config.packager.clone(),
            store,
            hooks,
            keys.clone(),
            registry::CbcsKeys::from_settings(&config.drm),
        ));
        for record in db.list().await? {
            let settings = record
                .settings(&config.ladders)
                .with_context(|| format!("stored event {:?}", record.id))?;
            registry
                .upsert(settings)
                .with_context(|| format!("stored event {:?}", record.id))?;
            if record.ended {
                registry.end(&record.id);
            }
        }
        let mut configured = config.control.admin_tokens.clone();
        let mut generated_token = None;
        if configured.is_empty() && db.tokens().await?.is_empty() {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes)
                .map_err(|e| anyhow::anyhow!("making an admin token: {e}"))?;
            let token = hex::encode(bytes);
            configured.push(AdminToken::new(&token)?);
            generated_token = Some(token);
        }
        let mut admin_tokens: Vec<KnownToken> = configured
            .into_iter()
            .enumerate()
            .map(|(i, token)| KnownToken {
                id: format!("config-{}", i + 1),
                name: "from the configuration".into(),
                token,
                from_config: true,
                created_at_ms: now,
            })
            .collect();
        for t in db.tokens().await? {
            let token = AdminToken::from_digest_hex(&t.sha256)
                .with_context(|| format!("stored admin token {:?} is unreadable", t.id))?;
            admin_tokens.push(KnownToken {
                id: t.id,
                name: t.name,
                token,
                from_config: false,
                created_at_ms: t.created_at_ms,
            });
        }
        let control = Arc::new(Control {
            registry,
            db,
            ladders: config.ladders.clone(),
            admin_tokens: std::sync::RwLock::new(admin_tokens),
            rtmp: std::sync::OnceLock::new(),
            edge_reports: audience::EdgeReports::default(),
            cluster_secret: config.access.cluster_secret.clone(),
            key_secret: match &config.access.cluster_secret {
                Some(s) => s.clone(),
                None => {
                    let mut bytes = [0u8; 24];
                    getrandom::fill(&mut bytes)
                        .map_err(|e| anyhow::anyhow!("making a cluster secret: {e}"))?;
                    weir_config::ClusterSecret::new(&hex::encode(bytes))?
                }
            },
            keys,
            edges: config.control.edges.clone(),
            local_edge: std::sync::OnceLock::new(),
            tls,
        });
        Ok(Opened {
            control,
            generated_token,
            database: shown,
        })
    }
}
