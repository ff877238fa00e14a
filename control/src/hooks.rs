//! Webhooks, as SRS's `http_hooks` and MediaMTX's `runOnPublish` give them: JSON POSTs to the
//! operator's URLs.
//!
//! - `on_publish` is asked before a publisher is accepted, once, within the configured
//!   timeout: a 2xx answer accepts it; any other answer, or none, refuses it (fail closed, as
//!   SRS does: a hook exists to keep publishers out).
//! - `on_unpublish` and `on_segment` are notifications: queued (bounded; when full, new ones
//!   are dropped and counted) and delivered by one thread of their own, with up to
//!   `max_attempts` attempts and a doubling pause from 500 ms, so a slow or dead hook server
//!   never stalls ingest or packaging.
//!
//! With a secret, every POST carries `X-Weir-Signature: t=UNIX_MS,v1=HEX`, the HMAC-SHA256 of
//! `"{t}.{body}"` (the timestamp is signed too, so a captured request cannot be replayed later
//! unnoticed). Counters: `weir_hooks_deliveries_total{hook, result}` with result `ok`,
//! `refused` (on_publish non-2xx), `failed` (no 2xx after every attempt) or `dropped` (queue
//! full).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use weir_config::HookSettings;

use crate::status::unix_ms;

/// One notification waiting for delivery.
struct Delivery {
    hook: &'static str,
    url: String,
    body: String,
}

/// The configured webhooks and their delivery queue.
pub(crate) struct Hooks {
    settings: HookSettings,
    agent: ureq::Agent,
    queue: Option<SyncSender<Delivery>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("settings", &self.settings)
            .finish()
    }
}

/// What a hook is told, as JSON.
#[derive(Serialize)]
struct Payload<'a> {
    action: &'static str,
    event: &'a str,
    /// ms since the Unix epoch.
    time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rendition: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
}

impl<'a> Payload<'a> {
    fn new(action: &'static str, event: &'a str) -> Payload<'a> {
        Payload {
            action,
            event,
            time_ms: unix_ms(SystemTime::now()),
            input: None,
            peer: None,
            rendition: None,
            msn: None,
            bytes: None,
            uri: None,
        }
    }
}

fn count(hook: &'static str, result: &'static str) {
    metrics::counter!("weir_hooks_deliveries_total", "hook" => hook, "result" => result)
        .increment(1);
}

impl Hooks {
    /// The hooks of `settings`; starts the delivery thread when a notification hook is set.
    pub(crate) fn start(settings: HookSettings, tls: ureq::tls::TlsConfig) -> Hooks {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let notifies = settings.on_unpublish.is_some() || settings.on_segment.is_some();
        let queue = notifies.then(|| {
            let (tx, rx) = sync_channel(settings.queue);
            let (agent, secret, attempts) = (
                agent.clone(),
                settings.secret.clone(),
                settings.max_attempts,
            );
            let deliver = move || deliver_all(&rx, &agent, secret.as_ref(), attempts);
            if let Err(e) = std::thread::Builder::new()
                .name("hooks".into())
                .spawn(deliver)
            {
                tracing::error!(error = %e, "cannot start the webhook thread; notifications are dropped");
            }
            tx
        });
        Hooks {
            settings,
            agent,
            queue,
        }
    }

    /// Asks `on_publish` whether `event`'s `input` may publish from `peer`. Blocks for at most
    /// the timeout (on a tokio worker, through `block_in_place`).
    ///
    /// # Errors
    /// Why it was refused (for the log), when it was.
    pub(crate) fn on_publish(
        &self,
        event: &str,
        input: &str,
        peer: std::net::SocketAddr,
    ) -> Result<(), String> {
        let Some(url) = &self.settings.on_publish else {
            return Ok(());
        };
        let mut p = Payload::new("on_publish", event);
        p.input = Some(input);
        p.peer = Some(peer.to_string());
        let body = serde_json::to_string(&p).unwrap_or_default();
        let answer = blocking(|| post(&self.agent, url, &body, self.settings.secret.as_ref()));
        match answer {
            Ok(status) if (200..300).contains(&status) => {
                count("on_publish", "ok");
                Ok(())
            }
            Ok(status) => {
                count("on_publish", "refused");
                Err(format!("the on_publish hook answered {status}"))
            }
            Err(e) => {
                count("on_publish", "failed");
                Err(format!("the on_publish hook failed: {e}"))
            }
        }
    }

    /// Tells `on_unpublish` that `event`'s `input` left.
    pub(crate) fn on_unpublish(&self, event: &str, input: &str) {
        if let Some(url) = &self.settings.on_unpublish {
            let mut p = Payload::new("on_unpublish", event);
            p.input = Some(input);
            self.enqueue("on_unpublish", url, &p);
        }
    }

    /// Tells `on_segment` that a segment was published.
    pub(crate) fn on_segment(
        &self,
        event: &str,
        rendition: &str,
        session: &dyn std::fmt::Display,
        msn: u64,
        bytes: usize,
    ) {
        if let Some(url) = &self.settings.on_segment {
            let mut p = Payload::new("on_segment", event);
            p.rendition = Some(rendition);
            p.msn = Some(msn);
            p.bytes = Some(bytes);
            p.uri = Some(format!("/live/{event}/{rendition}/{session}/{msn}.m4s"));
            self.enqueue("on_segment", url, &p);
        }
    }

    fn enqueue(&self, hook: &'static str, url: &str, payload: &Payload<'_>) {
        let Some(queue) = &self.queue else { return };
        let delivery = Delivery {
            hook,
            url: url.to_string(),
            body: serde_json::to_string(payload).unwrap_or_default(),
        };
        match queue.try_send(delivery) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                count(hook, "dropped");
            }
        }
    }
}

/// The delivery thread: one notification at a time, each with its retries.
fn deliver_all(
    queue: &Receiver<Delivery>,
    agent: &ureq::Agent,
    secret: Option<&weir_config::HookSecret>,
    attempts: u32,
) {
    while let Ok(d) = queue.recv() {
        let mut pause = Duration::from_millis(500);
        let mut delivered = false;
        for attempt in 1..=attempts {
            match post(agent, &d.url, &d.body, secret) {
                Ok(status) if (200..300).contains(&status) => {
                    delivered = true;
                    break;
                }
                Ok(status) => tracing::debug!(hook = d.hook, status, attempt, "webhook answered"),
                Err(e) => tracing::debug!(hook = d.hook, error = %e, attempt, "webhook failed"),
            }
            if attempt < attempts {
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
        if delivered {
            count(d.hook, "ok");
        } else {
            count(d.hook, "failed");
            tracing::warn!(hook = d.hook, url = %d.url, "webhook not delivered after every attempt");
        }
    }
}

/// The `X-Weir-Signature` value of `body` sent at `t` (ms).
pub(crate) fn signature(secret: &[u8], t: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body`; the answer's status.
fn post(
    agent: &ureq::Agent,
    url: &str,
    body: &str,
    secret: Option<&weir_config::HookSecret>,
) -> Result<u16, ureq::Error> {
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("weir/", env!("CARGO_PKG_VERSION")));
    if let Some(secret) = secret {
        let t = unix_ms(SystemTime::now());
        request = request.header("X-Weir-Signature", &signature(secret.expose(), t, body));
    }
    let response = request.send(body)?;
    Ok(response.status().as_u16())
}

/// Runs `f`, which blocks, without stalling a multi-threaded tokio runtime's worker.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signatures_are_hmac_sha256_of_time_and_body() {
        // Known answer from an independent implementation (Python's hmac module):
        // hmac.new(b"key", b"1.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"key", 1, "{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(
            signature(b"key", 1, "{}"),
            signature(b"key", 2, "{}"),
            "the time is signed"
        );
    }
}
