//! TLS with rustls (the `ring` provider): the certificate chain and key from PEM files,
//! re-read when either file changes (modification time, size or inode, checked every
//! [`RELOAD_CHECK`]) without a restart: new handshakes get the new certificate, connections
//! already open keep theirs. A pair that does not load is logged and the previous one kept.
//! ALPN offers `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the certificate files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A listener's certificate chain and private key, PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no PEM object of the kind.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The key does not fit the certificate, or rustls refused the configuration.
    #[error("TLS: {0}")]
    Config(String),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(&files.key, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Config(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(files: &TlsFiles) -> [Stamp; 2] {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
    };
    [one(&files.cert), one(&files.key)]
}

/// Hands every handshake the newest certificate.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The TLS side of a listener.
pub(crate) struct Acceptor;

impl Acceptor {
    /// Loads `files` and starts watching them.
    ///
    /// # Errors
    /// [`TlsError`] if they do not load now.
    pub(crate) fn start(
        files: TlsFiles,
        listener: &'static str,
    ) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let mut seen = stamp(&files);
        let resolver = Arc::new(Reloading {
            current: RwLock::new(Arc::new(load(&files)?)),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let weak = Arc::downgrade(&resolver);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(resolver) = weak.upgrade() else {
                    return;
                };
                let now = stamp(&files);
                if now == seen {
                    continue;
                }
                let f = files.clone();
                match tokio::task::spawn_blocking(move || load(&f)).await {
                    Ok(Ok(certified)) => {
                        seen = now;
                        *resolver.current.write().unwrap_or_else(|e| e.into_inner()) =
                            Arc::new(certified);
                        metrics::counter!("weir_http_tls_reloads_total", "listener" => listener)
                            .increment(1);
                        tracing::info!(listener, cert = %files.cert.display(), "TLS certificate reloaded");
                    }
                    // Half written (the key not yet matching the new certificate, say): tried
                    // again at the next check, the previous certificate in use meanwhile.
                    Ok(Err(e)) => {
                        tracing::warn!(listener, error = %e, "TLS certificate not reloaded; the previous one stays in use")
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_pair_and_refuses_mismatches() {
        let dir = std::env::temp_dir().join(format!("weir-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |name: &str| {
            let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
            (c.cert.pem(), c.signing_key.serialize_pem())
        };
        let (cert_a, key_a) = make("a.example");
        let (_, key_b) = make("b.example");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, &cert_a).unwrap();
        std::fs::write(&files.key, &key_a).unwrap();
        assert!(load(&files).is_ok());
        std::fs::write(&files.key, &key_b).unwrap();
        let e = load(&files).err().unwrap().to_string();
        assert!(e.contains("does not match"), "{e}");
        std::fs::write(&files.cert, "not pem").unwrap();
        assert!(load(&files).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
