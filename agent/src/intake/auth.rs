//! The `GRADIENT-TOKEN` header: `base64("{vendorKey}:{partnerKey}")`. The partner key selects
//! the integration (compared in constant time against every stored hash); the vendor key is
//! bound on the first successful call and must match on every later one.
//!
//! This module decides who is calling and says precisely why a token is refused, without ever
//! echoing or logging the token or either key.

use base64::Engine as _;

use super::keys;
use crate::journal::tables::INTEGRATIONS;
use crate::journal::{JournalError, Read};
use crate::model::Integration;

/// The header vendors authenticate with.
pub const HEADER: &str = "gradient-token";

const SHAPE: &str = "base64(\"{vendorKey}:{partnerKey}\")";

/// Why a request's token was refused (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the GRADIENT-TOKEN header is missing; send {SHAPE}, with the partner key `tally \
         integration add` printed"
    )]
    Missing,
    #[error("the GRADIENT-TOKEN header is not base64 text; it must be {SHAPE}")]
    NotBase64,
    #[error(
        "the GRADIENT-TOKEN header decodes to something other than UTF-8 text; it must be {SHAPE}"
    )]
    NotText,
    #[error("the GRADIENT-TOKEN header holds no ':' between the two keys; it must be {SHAPE}")]
    NoSeparator,
    #[error("the GRADIENT-TOKEN header holds an empty {0} key; it must be {SHAPE}")]
    EmptyKey(&'static str),
    #[error(
        "the partner key in GRADIENT-TOKEN is not one this tally issued, or it was rotated or its \
         integration removed; ask the MSP for the current key (`tally integration add` or \
         `rotate-key` prints it)"
    )]
    UnknownPartnerKey,
    #[error(
        "the vendor key in GRADIENT-TOKEN differs from the one integration \"{0}\" was first used \
         with; send the same vendor key, or have the MSP run `tally integration rotate-key {0}` \
         to bind a new one"
    )]
    VendorKeyMismatch(String),
}

/// The two keys of a token. Never printed.
pub struct Token {
    vendor_key: String,
    partner_key: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn parse(header: Option<&[u8]>) -> Result<Token, AuthError> {
        let raw = header.ok_or(AuthError::Missing)?;
        let text = std::str::from_utf8(raw).map_err(|_| AuthError::NotBase64)?.trim();
        if text.is_empty() {
            return Err(AuthError::Missing);
        }
        use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
        let decoded = STANDARD_PAD_INDIFFERENT
            .decode(text)
            .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(text))
            .map_err(|_| AuthError::NotBase64)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::NotText)?;
        // Partner keys hold no ':', so the last one separates the keys even if a vendor key
        // has one.
        let (vendor_key, partner_key) = decoded.rsplit_once(':').ok_or(AuthError::NoSeparator)?;
        if vendor_key.is_empty() {
            return Err(AuthError::EmptyKey("vendor"));
        }
        if partner_key.is_empty() {
            return Err(AuthError::EmptyKey("partner"));
        }
        Ok(Token { vendor_key: vendor_key.to_string(), partner_key: partner_key.to_string() })
    }

    /// The live integration whose partner key this is. Every stored hash is compared, so the
    /// time taken does not depend on which one matched.
    pub fn integration(
        &self,
        tx: &impl Read,
    ) -> Result<Result<Integration, AuthError>, JournalError> {
        let mut found = None;
        for integration in tx.values(&INTEGRATIONS, "")? {
            let matches = keys::partner_key_matches(
                &integration.key_salt,
                &integration.key_hash,
                &self.partner_key,
            );
            if matches && integration.removed_at.is_none() && found.is_none() {
                found = Some(integration);
            }
        }
        Ok(found.ok_or(AuthError::UnknownPartnerKey))
    }

    /// Whether `integration` still has this token's partner key (it may have been rotated or
    /// removed since the token was checked).
    pub fn still_valid(&self, integration: &Integration) -> bool {
        integration.removed_at.is_none()
            && keys::partner_key_matches(
                &integration.key_salt,
                &integration.key_hash,
                &self.partner_key,
            )
    }

    /// Checks the vendor key against the one bound to `integration`. Returns true when none is
    /// bound yet, in which case the caller binds it with [`Token::bind_vendor_key`].
    pub fn check_vendor_key(&self, integration: &Integration) -> Result<bool, AuthError> {
        match &integration.vendor_key_hash {
            None => Ok(true),
            Some(hash)
                if keys::vendor_key_matches(&integration.key_salt, hash, &self.vendor_key) =>
            {
                Ok(false)
            }
            Some(_) => Err(AuthError::VendorKeyMismatch(integration.name.clone())),
        }
    }

    pub fn bind_vendor_key(&self, integration: &mut Integration) {
        integration.vendor_key_hash =
            Some(keys::vendor_key_hash(&integration.key_salt, &self.vendor_key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.encode(text).into_bytes()
    }

    #[test]
    fn tokens_split_at_the_last_colon() {
        let token = Token::parse(Some(&encode("vendor:with:colons:tally_pk_abc"))).unwrap();
        assert_eq!(token.vendor_key, "vendor:with:colons");
        assert_eq!(token.partner_key, "tally_pk_abc");
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }

    #[test]
    fn bad_tokens_say_why() {
        assert_eq!(Token::parse(None).unwrap_err(), AuthError::Missing);
        assert_eq!(Token::parse(Some(b"  ")).unwrap_err(), AuthError::Missing);
        assert_eq!(Token::parse(Some(b"v:p")).unwrap_err(), AuthError::NotBase64);
        assert_eq!(
            Token::parse(Some(&encode("no separator"))).unwrap_err(),
            AuthError::NoSeparator
        );
        assert_eq!(Token::parse(Some(&encode(":p"))).unwrap_err(), AuthError::EmptyKey("vendor"));
        assert_eq!(Token::parse(Some(&encode("v:"))).unwrap_err(), AuthError::EmptyKey("partner"));
        let not_text = base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'p']);
        assert_eq!(Token::parse(Some(not_text.as_bytes())).unwrap_err(), AuthError::NotText);
    }

    #[test]
    fn unpadded_and_url_safe_base64_are_accepted() {
        let text = "vendor-key?:tally_pk_x";
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(text);
        assert!(Token::parse(Some(unpadded.as_bytes())).is_ok());
        let url = base64::engine::general_purpose::URL_SAFE.encode(text);
        assert!(Token::parse(Some(url.as_bytes())).is_ok());
    }
}
