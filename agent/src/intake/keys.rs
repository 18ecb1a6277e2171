//! Partner keys: making them, and checking a presented key or vendor key against what the
//! journal holds.
//!
//! A partner key is shown once, when it is made, and never stored: the journal keeps a random
//! salt and SHA-256(salt ‖ key). The vendor key bound on a vendor's first call is kept the same
//! way under the same salt, with a domain tag so the two hashes can never be swapped. Every
//! comparison is constant-time. This module never logs and never returns a key it did not just
//! make.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every partner key starts with this, so a key pasted in the wrong place is recognisable.
pub const PARTNER_KEY_PREFIX: &str = "tally_pk_";

const KEY_BYTES: usize = 32;
const SALT_BYTES: usize = 16;
const VENDOR_KEY_TAG: &[u8] = b"tally vendor key\0";

/// A freshly made partner key and what the journal keeps of it.
pub struct NewKey {
    /// The key itself: shown to the user once, then dropped.
    pub key: String,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("key", &"<redacted>").finish_non_exhaustive()
    }
}

/// Makes a random partner key (32 bytes from the operating system's CSPRNG, base64url).
pub fn new_partner_key() -> NewKey {
    let mut secret = [0u8; KEY_BYTES];
    rand::fill(&mut secret);
    let key = format!(
        "{PARTNER_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let mut salt = vec![0u8; SALT_BYTES];
    rand::fill(salt.as_mut_slice());
    let hash = partner_key_hash(&salt, &key);
    NewKey { key, salt, hash }
}

pub fn partner_key_hash(salt: &[u8], key: &str) -> Vec<u8> {
    Sha256::new().chain_update(salt).chain_update(key.as_bytes()).finalize().to_vec()
}

pub fn vendor_key_hash(salt: &[u8], vendor_key: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(salt)
        .chain_update(VENDOR_KEY_TAG)
        .chain_update(vendor_key.as_bytes())
        .finalize()
        .to_vec()
}

/// Whether `key` is the partner key stored as `salt` and `hash`. An empty stored hash (an
/// integration made by a CSV import, which has no key) matches nothing.
pub fn partner_key_matches(salt: &[u8], hash: &[u8], key: &str) -> bool {
    !hash.is_empty() && bool::from(partner_key_hash(salt, key).as_slice().ct_eq(hash))
}

pub fn vendor_key_matches(salt: &[u8], hash: &[u8], vendor_key: &str) -> bool {
    !hash.is_empty() && bool::from(vendor_key_hash(salt, vendor_key).as_slice().ct_eq(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_matches_only_itself() {
        let made = new_partner_key();
        assert!(made.key.starts_with(PARTNER_KEY_PREFIX));
        assert_eq!(made.key.len(), PARTNER_KEY_PREFIX.len() + 43);
        assert!(partner_key_matches(&made.salt, &made.hash, &made.key));
        assert!(!partner_key_matches(&made.salt, &made.hash, &format!("{}x", made.key)));
        let other = new_partner_key();
        assert_ne!(made.key, other.key);
        assert!(!partner_key_matches(&made.salt, &made.hash, &other.key));
        assert!(!format!("{made:?}").contains(&made.key));
    }

    #[test]
    fn empty_stored_hash_matches_nothing() {
        assert!(!partner_key_matches(b"salt", &[], ""));
        assert!(!vendor_key_matches(b"salt", &[], ""));
    }

    #[test]
    fn vendor_and_partner_hashes_differ_for_the_same_text() {
        let salt = b"0123456789abcdef";
        assert_ne!(partner_key_hash(salt, "same"), vendor_key_hash(salt, "same"));
        assert!(vendor_key_matches(salt, &vendor_key_hash(salt, "v-1"), "v-1"));
        assert!(!vendor_key_matches(salt, &vendor_key_hash(salt, "v-1"), "v-2"));
    }
}
