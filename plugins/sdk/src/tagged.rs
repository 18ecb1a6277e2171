//! Reading the contract's tagged messages (`{"reply": "stepped", ...}`) without buffering them.
//!
//! serde reads an internally tagged enum by first copying the whole object into a tree of its
//! own (it cannot know the variant before it has seen the tag), so a page of records was copied
//! once per level of nesting (reply, step, record) and a record's source JSON could not be kept
//! as text at all. Here each message is taken as JSON text, its tag is read first (straight from
//! the opening bytes when, as every Rust plugin and the host write it, the tag comes first;
//! otherwise by skimming the object), and then the variant's fields are read from the same text
//! into the variant's own struct. Nothing is copied into an intermediate tree, and a record's
//! `raw` stays the bytes the source sent.
//!
//! These types are therefore read from JSON text only (`serde_json::from_str`, `from_slice`,
//! `from_reader`), which is the only form the contract has. The wire format is unchanged, the
//! tag may stand anywhere in the object, and unknown fields are ignored as before.

use std::fmt;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// One tagged JSON object: its tag and its whole text.
pub(crate) struct Tagged {
    pub tag: String,
    pub raw: Box<RawValue>,
}

impl Tagged {
    /// Reads an object whose variant is named by the field `tag_field`.
    pub fn read<'de, D: Deserializer<'de>>(
        deserializer: D,
        tag_field: &'static str,
    ) -> Result<Tagged, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let tag = match leading_tag(raw.get(), tag_field) {
            Some(tag) => tag.to_string(),
            None => find_tag(raw.get(), tag_field).map_err(de::Error::custom)?,
        };
        Ok(Tagged { tag, raw })
    }

    /// The variant's fields, read from the whole object (the tag is an ignored extra field).
    pub fn fields<T: DeserializeOwned, E: de::Error>(&self) -> Result<T, E> {
        serde_json::from_str(self.raw.get()).map_err(E::custom)
    }

    pub fn unknown<E: de::Error>(&self, expected: &'static [&'static str]) -> E {
        E::unknown_variant(&self.tag, expected)
    }
}

/// The tag when the object opens with it: `{"reply":"stepped",...`. A tag with an escape, or
/// any other layout, is left to [`find_tag`].
fn leading_tag<'a>(text: &'a str, tag_field: &str) -> Option<&'a str> {
    let rest = text.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix('"')?.strip_prefix(tag_field)?.strip_prefix('"')?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

/// The tag wherever it stands, skimming the other fields without keeping them.
fn find_tag(text: &str, tag_field: &'static str) -> Result<String, serde_json::Error> {
    struct Find(&'static str);

    impl<'de> Visitor<'de> for Find {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an object with a `{}` field", self.0)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
            let mut tag = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == self.0 && tag.is_none() {
                    tag = Some(map.next_value::<String>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            tag.ok_or_else(|| de::Error::missing_field(self.0))
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.deserialize_map(Find(tag_field))
}

/// Implements `Deserialize` for an internally tagged enum of the contract: each arm names the
/// tag, the variant, and the variant's fields (struct variants), or a type whose fields are the
/// whole object (newtype variants), or nothing (unit variants).
macro_rules! tagged_enum {
    (
        $enum:ident, $tag_field:literal {
            $( $tag:literal => $variant:ident $( { $($field:ident : $ty:ty),* $(,)? } )? $( ( $inner:ty ) )? ),* $(,)?
        }
    ) => {
        impl<'de> ::serde::Deserialize<'de> for $enum {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                const VARIANTS: &[&str] = &[$($tag),*];
                let tagged = $crate::tagged::Tagged::read(deserializer, $tag_field)?;
                match tagged.tag.as_str() {
                    $( $tag => $crate::tagged::tagged_enum!(@variant tagged, $enum, $variant
                        $( { $($field : $ty),* } )? $( ( $inner ) )? ), )*
                    _ => Err(tagged.unknown(VARIANTS)),
                }
            }
        }
    };
    (@variant $tagged:ident, $enum:ident, $variant:ident { $($field:ident : $ty:ty),* }) => {{
        #[derive(::serde::Deserialize)]
        struct Fields { $($field: $ty),* }
        let fields = $tagged.fields::<Fields, D::Error>()?;
        Ok($enum::$variant { $($field: fields.$field),* })
    }};
    (@variant $tagged:ident, $enum:ident, $variant:ident ( $inner:ty )) => {
        $tagged.fields::<$inner, D::Error>().map($enum::$variant)
    };
    (@variant $tagged:ident, $enum:ident, $variant:ident) => {
        Ok($enum::$variant)
    };
}

pub(crate) use tagged_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leading_tag_is_read_from_the_opening_bytes() {
        assert_eq!(leading_tag(r#"{"reply":"done"}"#, "reply"), Some("done"));
        assert_eq!(leading_tag(" {\n \"reply\" : \"stepped\", \"x\":1}", "reply"), Some("stepped"));
        assert_eq!(leading_tag(r#"{"x":1,"reply":"done"}"#, "reply"), None);
        assert_eq!(leading_tag(r#"{"replyx":"done"}"#, "reply"), None);
        assert_eq!(leading_tag(r#"{"reply":"do\"ne"}"#, "reply"), None);
        assert_eq!(leading_tag(r#"{"reply":7}"#, "reply"), None);
    }

    #[test]
    fn a_tag_elsewhere_is_found_and_a_missing_one_is_named() {
        let text = r#"{"x":{"reply":"no"},"y":[1,"reply"],"reply":"done"}"#;
        assert_eq!(find_tag(text, "reply").unwrap(), "done");
        let missing = find_tag(r#"{"x":1}"#, "reply").unwrap_err();
        assert!(missing.to_string().contains("missing field `reply`"), "{missing}");
        assert!(find_tag("[1]", "reply").is_err());
    }

    #[test]
    fn a_page_is_read_whatever_the_order_and_keeps_each_source_row_as_sent() {
        use crate::{Record, Reply, Step};
        let text = r#"{"step": {"records": [
              {"id": "7", "raw": {"id" : 7,  "n": 1.50}, "kind": "company", "name": "Contoso",
               "identifier": null, "active": true, "updated_at": null, "extra": [1]}],
            "last": true, "step": "page", "checkpoint": {"cursor": null, "tie_id": null,
            "page_token": "2"}}, "reply": "stepped"}"#;
        let Reply::Stepped { step: Step::Page { records, checkpoint, last } } =
            serde_json::from_str(text).unwrap()
        else {
            panic!("not a page");
        };
        assert!(last);
        assert_eq!(checkpoint.page_token.as_deref(), Some("2"));
        let [Record::Company(company)] = records.as_slice() else { panic!("{records:?}") };
        assert_eq!(company.name, "Contoso");
        assert_eq!(company.raw.as_ref().unwrap().get(), r#"{"id" : 7,  "n": 1.50}"#);

        // Written back, the tag leads and the raw row is the same bytes.
        let again = serde_json::to_string(&Reply::Stepped {
            step: Step::Page { records: records.clone(), checkpoint, last },
        })
        .unwrap();
        assert!(again.starts_with(r#"{"reply":"stepped","step":{"step":"page""#), "{again}");
        assert!(again.contains(r#""raw":{"id" : 7,  "n": 1.50}"#), "{again}");
        assert_eq!(
            serde_json::from_str::<Reply>(&again).unwrap(),
            serde_json::from_str(text).unwrap()
        );
    }

    #[test]
    fn an_unknown_or_missing_tag_is_named() {
        let unknown = serde_json::from_str::<crate::Reply>(r#"{"reply":"paged"}"#).unwrap_err();
        assert!(unknown.to_string().contains("unknown variant `paged`"), "{unknown}");
        assert!(unknown.to_string().contains("`stepped`"), "{unknown}");
        let missing = serde_json::from_str::<crate::Record>(r#"{"id":"1"}"#).unwrap_err();
        assert!(missing.to_string().contains("missing field `kind`"), "{missing}");
        let field = serde_json::from_str::<crate::Call>(r#"{"call":"close"}"#).unwrap_err();
        assert!(field.to_string().contains("missing field `session`"), "{field}");
    }
}
