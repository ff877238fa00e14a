//! Phases 2 and 3 for one request: geo, then token (with the per-token viewer limit), under
//! the event's policy ([`crate::policy`]). Default (an event with no access options): both
//! admit everyone, and nothing about the viewer is looked up.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use weir_config::{AccessPolicy, TokenKey};

use crate::coalesce::Coalescer;
use crate::geo::Geo;
use crate::policy::Policies;
use crate::sharing::TokenSharing;
use crate::token::{self, TokenError};
use crate::EdgeError;

/// Why a viewer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The viewer's country (or unknown country) is not admitted: 403.
    #[error("not available in your region")]
    Geo,
    /// No valid token for this URL: 403.
    #[error("{0}")]
    Token(TokenError),
    /// The token already has as many viewers as the event allows: 429.
    #[error("too many viewers for this token")]
    Sharing,
}

impl Denial {
    /// A short label for `weir_edge_access_denied_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Denial::Geo => "geo",
            Denial::Token(t) => t.label(),
            Denial::Sharing => "viewers_per_token",
        }
    }
}

/// One request, as the access phases see it.
pub(crate) struct Request<'a> {
    pub(crate) event: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) client: IpAddr,
    pub(crate) user_agent: Option<&'a str>,
}

/// The access phases' state.
pub(crate) struct Access {
    pub(crate) geo: Arc<Geo>,
    pub(crate) token_keys: Vec<TokenKey>,
    pub(crate) policies: Policies,
    pub(crate) sharing: TokenSharing,
}

impl Access {
    /// Checks `r` against its event's policy at `now`: `Ok` with the token to hand on in
    /// playlists (when the event requires one).
    ///
    /// # Errors
    /// [`EdgeError::Denied`], or the policy's own errors (unknown event, upstream away).
    pub(crate) async fn check<'q>(
        &self,
        r: &Request<'q>,
        coalescer: &Arc<Coalescer>,
        timeout: Duration,
        now: Instant,
    ) -> Result<Option<&'q str>, EdgeError> {
        let policy = self.policies.get(r.event, coalescer, timeout, now).await?;
        // The wall clock only for a token's expiry.
        let wall = match policy.require_token {
            true => SystemTime::now(),
            false => SystemTime::UNIX_EPOCH,
        };
        self.admit(&policy, r, now, wall)
            .inspect_err(|d| {
                metrics::counter!("weir_edge_access_denied_total",
                    "event" => r.event.to_string(), "reason" => d.label())
                .increment(1);
            })
            .map_err(EdgeError::Denied)
    }

    fn admit<'q>(
        &self,
        policy: &AccessPolicy,
        r: &Request<'q>,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Option<&'q str>, Denial> {
        // Geo.
        if policy.geo.needs_country() && !policy.geo.admits(self.geo.country(r.client)) {
            return Err(Denial::Geo);
        }
        // Token.
        if !policy.require_token {
            return Ok(None);
        }
        let presented = token::from_query(r.query).ok_or(Denial::Token(TokenError::Missing))?;
        let now_s = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        token::verify(
            presented,
            &self.token_keys,
            r.event,
            r.path,
            r.client,
            now_s,
        )
        .map_err(Denial::Token)?;
        if let Some(limit) = policy.max_viewers_per_token {
            if !self
                .sharing
                .admit(presented, r.client, r.user_agent, limit.get(), now)
            {
                return Err(Denial::Sharing);
            }
        }
        Ok(Some(presented))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::AccessOptions;

    #[test]
    fn geo_then_token_then_sharing() {
        let key = TokenKey::new("k1", "0123456789abcdef0123456789abcdef").unwrap();
        let access = Access {
            geo: Geo::open(None).unwrap(),
            token_keys: vec![key.clone()],
            policies: Policies::default(),
            sharing: TokenSharing::default(),
        };
        let policy = |o: AccessOptions| AccessPolicy::validate("e", &o).unwrap();
        let open = policy(AccessOptions::default());
        let gb_only = policy(AccessOptions {
            geo_allow: Some(vec!["GB".into()]),
            ..Default::default()
        });
        let tokened = policy(AccessOptions {
            require_token: Some(true),
            max_viewers_per_token: Some(1),
            ..Default::default()
        });
        let t = token::mint(
            &token::Claims {
                key_id: "k1".into(),
                expires_unix_s: 4_000_000_000,
                event: "e".into(),
                ip: None,
                path: None,
            },
            &key,
        );
        let query = format!("_HLS_msn=3&token={t}");
        let request = |query: Option<&'static str>, ip: &str| Request {
            event: "e",
            path: "/live/e/master.m3u8",
            query,
            client: ip.parse().unwrap(),
            user_agent: None,
        };
        let query: &'static str = Box::leak(query.into_boxed_str());
        let (now, wall) = (Instant::now(), SystemTime::now());
        let r = request(None, "81.2.69.142");
        assert_eq!(access.admit(&open, &r, now, wall), Ok(None));
        // No database: every country unknown, refused by an allow list.
        assert_eq!(access.admit(&gb_only, &r, now, wall), Err(Denial::Geo));
        assert_eq!(
            access.admit(&tokened, &r, now, wall),
            Err(Denial::Token(TokenError::Missing))
        );
        let r = request(Some(query), "192.0.2.1");
        assert_eq!(access.admit(&tokened, &r, now, wall), Ok(Some(t.as_str())));
        let other = request(Some(query), "192.0.2.2");
        assert_eq!(
            access.admit(&tokened, &other, now, wall),
            Err(Denial::Sharing)
        );
        assert_eq!(Denial::Sharing.label(), "viewers_per_token");
    }
}
