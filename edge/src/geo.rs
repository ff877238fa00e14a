//! Phase 2, geo: the viewer's country from a MaxMind GeoIP2/GeoLite2 Country or City
//! database (the `maxminddb` crate), checked against the event's `geo_allow`/`geo_deny`.
//!
//! Default: no database, so every country is unknown, and an event without a geo rule admits
//! everyone. The database is read whole into memory at start (a bad file stops the edge with
//! a clear error) and re-read when the file changes (its modification time, size or inode,
//! checked every [`RELOAD_CHECK`]); requests keep using the old copy until the new one is
//! parsed, so none is dropped or delayed, and a file that does not parse (half copied, say)
//! is ignored until it changes again. The country is the database's `country`, else its
//! `registered_country`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use maxminddb::Reader;
use serde::Deserialize;
use weir_config::CountryCode;

/// How often the database file is checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Iso<'a>>,
    #[serde(borrow)]
    registered_country: Option<Iso<'a>>,
}

#[derive(Deserialize)]
struct Iso<'a> {
    iso_code: Option<&'a str>,
}

/// What identifies one version of the file.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.modified()?, m.len(), m.ino()))
}

/// The GeoIP database, if one is configured.
#[derive(Debug)]
pub(crate) struct Geo {
    reader: RwLock<Option<Arc<Reader<Vec<u8>>>>>,
}

fn load(path: &Path) -> Result<(Reader<Vec<u8>>, Stamp), String> {
    let before = stamp(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = Reader::open_readfile(path)
        .map_err(|e| format!("{}: not a MaxMind database: {e}", path.display()))?;
    let t = &reader.metadata.database_type;
    if !t.contains("Country") && !t.contains("City") {
        return Err(format!(
            "{}: a {t} database has no countries (use a GeoIP2/GeoLite2 Country or City database)",
            path.display()
        ));
    }
    Ok((reader, before))
}

impl Geo {
    /// Opens the database at `path` (none: every country unknown) and, if there is one,
    /// watches the file for changes.
    ///
    /// # Errors
    /// The file cannot be read or is not a Country/City database.
    pub(crate) fn open(path: Option<PathBuf>) -> Result<Arc<Geo>, String> {
        let Some(p) = path else {
            return Ok(Arc::new(Geo {
                reader: RwLock::new(None),
            }));
        };
        let (reader, mut current) = load(&p)?;
        tracing::info!(path = %p.display(), database = %reader.metadata.database_type,
            build_epoch = reader.metadata.build_epoch, "GeoIP database loaded");
        let geo = Arc::new(Geo {
            reader: RwLock::new(Some(Arc::new(reader))),
        });
        let weak = Arc::downgrade(&geo);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(geo) = weak.upgrade() else { return };
                match stamp(&p) {
                    Ok(now) if now != current => {
                        let path = p.clone();
                        match tokio::task::spawn_blocking(move || load(&path)).await {
                            Ok(Ok((reader, s))) => {
                                current = s;
                                tracing::info!(path = %p.display(),
                                    build_epoch = reader.metadata.build_epoch,
                                    "GeoIP database reloaded");
                                metrics::counter!("weir_edge_geoip_reloads_total").increment(1);
                                *geo.reader.write().unwrap_or_else(|e| e.into_inner()) =
                                    Some(Arc::new(reader));
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "GeoIP database not reloaded; the previous one stays in use")
                            }
                            Err(_) => {}
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(path = %p.display(), error = %e, "GeoIP database file unreadable")
                    }
                }
            }
        });
        Ok(geo)
    }

    /// The country of `ip`; `None` if unknown (or no database).
    pub(crate) fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let reader = self
            .reader
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let record: Record<'_> = reader.lookup(ip).ok()??;
        record
            .country
            .and_then(|c| c.iso_code)
            .or_else(|| record.registered_country.and_then(|c| c.iso_code))
            .and_then(CountryCode::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../assets/geo")
            .join(name)
    }

    #[tokio::test]
    async fn countries_of_the_test_database_and_reload() {
        let dir = std::env::temp_dir().join(format!("weir-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("geo.mmdb");
        std::fs::copy(fixture("GeoIP2-Country-Test.mmdb"), &db).unwrap();
        let geo = Geo::open(Some(db.clone())).unwrap();
        let country = |ip: &str| {
            geo.country(ip.parse().unwrap())
                .map(|c| c.as_str().to_string())
        };
        for (ip, want) in [
            ("81.2.69.142", Some("GB")),
            ("89.160.20.112", Some("SE")),
            ("216.160.83.56", Some("US")),
            ("175.16.199.1", Some("CN")),
            ("2001:218::1", Some("JP")),
            ("127.0.0.1", None),
            ("2001:480::1", None),
        ] {
            assert_eq!(country(ip).as_deref(), want, "{ip}");
        }
        // Replaced on disk: the new file's answers, without a restart.
        let tmp = dir.join("geo.mmdb.new");
        std::fs::copy(fixture("GeoLite2-Country-Test.mmdb"), &tmp).unwrap();
        std::fs::rename(&tmp, &db).unwrap();
        let mut waited = 0;
        while country("175.16.199.1").is_some() {
            assert!(waited < 100, "the replaced database was not loaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        assert_eq!(country("2001:480::1").as_deref(), Some("US"));
        // A broken file is refused (the watcher then keeps the loaded one).
        std::fs::write(&db, b"not a database").unwrap();
        assert!(load(&db).is_err());
        assert_eq!(country("2001:480::1").as_deref(), Some("US"));
        assert!(Geo::open(Some(dir.join("missing.mmdb"))).is_err());
        assert!(Geo::open(Some(db)).is_err());
        assert_eq!(
            Geo::open(None)
                .unwrap()
                .country("81.2.69.142".parse().unwrap()),
            None
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
