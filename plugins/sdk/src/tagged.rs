//! Reading the contract's tagged messages (`{"reply": "stepped", ...}`) without buffering them.
//!
//! serde reads an internally tagged enum by first copying the whole object into a tree of its
//! own (it cannot know the variant before it has seen the tag), so a page of records was copied
//! once per level of nesting (reply, step, record), and a record's source JSON could not be
//! kept as text at all. Here the object is read as it streams: when its first member is the tag,
//! as every Rust plugin and the host write it, the rest of the object is read straight into the
//! variant's fields. When the tag stands elsewhere, the members before it are kept as JSON text
//! until it is found, and the variant is read from that text: slower, and just as correct.
//!
//! These types are therefore read from JSON only (`serde_json::from_str`, `from_slice`,
//! `from_reader`), which is the only form the contract has. The wire format is unchanged, and
//! unknown members are ignored as before.

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess};
use serde_json::value::RawValue;

/// What follows the tag: the rest of the object as it streams, or, when the tag was not first,
/// the other members as JSON text.
pub(crate) enum Rest<A> {
    Live(A),
    Text(String),
}

/// Reads the tag named `tag_field` of the object `map` is reading.
pub(crate) fn split<'de, A: MapAccess<'de>>(
    mut map: A,
    tag_field: &'static str,
) -> Result<(String, Rest<A>), A::Error> {
    let Some(first) = map.next_key::<String>()? else {
        return Err(de::Error::missing_field(tag_field));
    };
    if first == tag_field {
        let tag = map.next_value::<String>()?;
        return Ok((tag, Rest::Live(map)));
    }
    let mut members: Vec<(String, Box<RawValue>)> = vec![(first, map.next_value()?)];
    let mut tag = None;
    while let Some(key) = map.next_key::<String>()? {
        if key == tag_field && tag.is_none() {
            tag = Some(map.next_value::<String>()?);
        } else {
            members.push((key, map.next_value()?));
        }
    }
    let tag = tag.ok_or_else(|| de::Error::missing_field(tag_field))?;
    let mut text = String::from("{");
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(key).map_err(de::Error::custom)?);
        text.push(':');
        text.push_str(value.get());
    }
    text.push('}');
    Ok((tag, Rest::Text(text)))
}

impl<'de, A: MapAccess<'de>> Rest<A> {
    /// The variant's fields, from the rest of the object.
    pub fn fields<F: DeserializeOwned>(self) -> Result<F, A::Error> {
        match self {
            Rest::Live(map) => F::deserialize(MapAccessDeserializer::new(map)),
            Rest::Text(text) => serde_json::from_str(&text).map_err(de::Error::custom),
        }
    }

    /// A variant without fields: the rest of the object is read and ignored.
    pub fn end(self) -> Result<(), A::Error> {
        match self {
            Rest::Live(map) => IgnoredAny::deserialize(MapAccessDeserializer::new(map)).map(drop),
            Rest::Text(_) => Ok(()),
        }
    }
}

/// Implements `Deserialize` for an internally tagged enum of the contract: each arm names the
/// tag, the variant, and the variant's fields (struct variants), or a type whose fields are the
/// rest of the object (newtype variants), or nothing (unit variants).
macro_rules! tagged_enum {
    (
        $enum:ident, $tag_field:literal {
            $( $tag:literal => $variant:ident $( { $($field:ident : $ty:ty),* $(,)? } )? $( ( $inner:ty ) )? ),* $(,)?
        }
    ) => {
        impl<'de> ::serde::Deserialize<'de> for $enum {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Tagged;

                impl<'de> ::serde::de::Visitor<'de> for Tagged {
                    type Value = $enum;

                    fn expecting(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
                        f.write_str(concat!("an object with a `", $tag_field, "` member"))
                    }

                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, map: A) -> Result<$enum, A::Error> {
                        const VARIANTS: &[&str] = &[$($tag),*];
                        let (tag, rest) = $crate::tagged::split(map, $tag_field)?;
                        match tag.as_str() {
                            $( $tag => $crate::tagged::tagged_enum!(@variant rest, $enum, $variant
                                $( { $($field : $ty),* } )? $( ( $inner ) )? ), )*
                            _ => Err(::serde::de::Error::unknown_variant(&tag, VARIANTS)),
                        }
                    }
                }

                deserializer.deserialize_map(Tagged)
            }
        }
    };
    (@variant $rest:ident, $enum:ident, $variant:ident { $($field:ident : $ty:ty),* }) => {{
        #[derive(::serde::Deserialize)]
        struct Fields { $($field: $ty),* }
        let fields: Fields = $rest.fields()?;
        Ok($enum::$variant { $($field: fields.$field),* })
    }};
    (@variant $rest:ident, $enum:ident, $variant:ident ( $inner:ty )) => {
        $rest.fields::<$inner>().map($enum::$variant)
    };
    (@variant $rest:ident, $enum:ident, $variant:ident) => {
        $rest.end().map(|()| $enum::$variant)
    };
}

pub(crate) use tagged_enum;

#[cfg(test)]
mod tests {
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
        let empty = serde_json::from_str::<crate::Reply>("{}").unwrap_err();
        assert!(empty.to_string().contains("missing field `reply`"), "{empty}");
        assert!(serde_json::from_str::<crate::Reply>(r#"["done"]"#).is_err());
        assert!(serde_json::from_str::<crate::Reply>(r#"{"reply":"done"} x"#).is_err());
    }

    #[test]
    fn a_unit_variant_ignores_what_follows_its_tag_and_a_tag_elsewhere_is_found() {
        let done: crate::Reply =
            serde_json::from_str(r#"{"reply":"done","note":{"a":[1,2]},"b":"x"}"#).unwrap();
        assert_eq!(done, crate::Reply::Done);
        let late: crate::Call = serde_json::from_str(
            r#"{"x":{"call":"no"},"session":4,"y":[1,"call"],"call":"close"}"#,
        )
        .unwrap();
        assert_eq!(late, crate::Call::Close { session: 4 });
        let escaped: crate::Call =
            serde_json::from_str(r#"{"ses\u0073ion":4,"call":"close"}"#).unwrap();
        assert_eq!(escaped, crate::Call::Close { session: 4 });
    }
}
