//! The byte encoding of every journal value: one format byte, then postcard.
//!
//! redb's own value encodings have changed between major versions, so the journal stores only
//! bytes it defines itself. The leading byte names the record encoding; a value written with an
//! encoding this build does not know is reported, never guessed at.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The record encoding this build writes.
pub const RECORD_ENCODING: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![RECORD_ENCODING];
    // Encoding into a Vec fails only for types postcard cannot represent, which the storage
    // types in `model` never contain; a test encodes each of them.
    bytes.extend(postcard::to_stdvec(value).expect("storage types always encode"));
    bytes
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&RECORD_ENCODING, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((other, _)) => Err(format!(
            "record encoding {other} is not known to this tally (it reads encoding {RECORD_ENCODING})"
        )),
        None => Err("empty value".to_string()),
    }
}
