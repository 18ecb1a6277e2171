//! The emulator's authorisation server: the client credentials it accepts, the tokens it
//! issued, and when a token expires (after a configurable number of API requests, or of
//! seconds, or when a test expires every token at once). An expired or unknown token makes an
//! API request answer 401, as Halo does. This module knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// What a client must present to `POST /auth/token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    /// When set, the token request must carry `?tenant=` with this value (a hosted Halo).
    pub tenant: Option<String>,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials {
            client_id: "7c0e2f1a-tally-halo-client".to_owned(),
            client_secret: "c3a1f0e2-6b7d-4f59-a2c8-91d4e7b6f0aa-9e1f2d3c".to_owned(),
            tenant: None,
        }
    }
}

/// When a token stops being accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    /// The API requests one token may make; `None` for no limit.
    pub max_requests: Option<u32>,
    /// How long a token lives, reported as `expires_in`.
    pub lifetime: Duration,
}

impl Default for TokenPolicy {
    fn default() -> TokenPolicy {
        TokenPolicy { max_requests: None, lifetime: Duration::from_secs(3600) }
    }
}

impl TokenPolicy {
    /// Tokens that expire after `requests` API requests each.
    pub fn requests(requests: u32) -> TokenPolicy {
        TokenPolicy { max_requests: Some(requests), ..TokenPolicy::default() }
    }

    /// Tokens that expire after `lifetime`.
    pub fn lifetime(lifetime: Duration) -> TokenPolicy {
        TokenPolicy { lifetime, ..TokenPolicy::default() }
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
}

struct Issued {
    at: Instant,
    uses: u32,
    policy: TokenPolicy,
    revoked: bool,
}

#[derive(Default)]
pub struct TokenBook {
    policy: Mutex<TokenPolicy>,
    issued: Mutex<HashMap<String, Issued>>,
    count: Mutex<u64>,
}

impl TokenBook {
    pub fn set_policy(&self, policy: TokenPolicy) {
        *lock(&self.policy) = policy;
    }

    pub fn policy(&self) -> TokenPolicy {
        *lock(&self.policy)
    }

    /// Issues a token under the current policy.
    pub fn issue(&self) -> (String, TokenPolicy) {
        let number = {
            let mut count = lock(&self.count);
            *count += 1;
            *count
        };
        let token = format!("halo-emulator-token-{number:04}");
        let policy = self.policy();
        let issued = Issued { at: Instant::now(), uses: 0, policy, revoked: false };
        lock(&self.issued).insert(token.clone(), issued);
        (token, policy)
    }

    /// Counts one API request against `token`, or refuses it.
    pub fn check(&self, token: &str) -> Result<(), Refusal> {
        let mut issued = lock(&self.issued);
        let Some(entry) = issued.get_mut(token) else { return Err(Refusal::Unknown) };
        let used_up = entry.policy.max_requests.is_some_and(|max| entry.uses >= max);
        if entry.revoked || used_up || entry.at.elapsed() >= entry.policy.lifetime {
            return Err(Refusal::Expired);
        }
        entry.uses += 1;
        Ok(())
    }

    /// Expires every token issued so far.
    pub fn expire_all(&self) {
        for entry in lock(&self.issued).values_mut() {
            entry.revoked = true;
        }
    }

    /// Tokens issued since the start.
    pub fn issued(&self) -> u64 {
        *lock(&self.count)
    }
}
