//! Secret redaction for everything the executor logs or returns as text.
//!
//! The secrets are the values of the settings a plugin names in `secret_settings`; they are
//! removed from any text, raw and percent-encoded. URLs additionally lose their userinfo
//! password and the values of query parameters whose names look like credentials. Headers are
//! never logged at all, so an `Authorization` value cannot appear. This module must never
//! return or log a secret, including in its own `Debug` output.

use std::fmt;

const MASK: &str = "REDACTED";

/// Query parameter names whose values are treated as secrets even when no setting holds them.
const SECRET_PARAMS: &[&str] =
    &["token", "secret", "password", "passwd", "key", "signature", "sig", "auth", "code"];

/// Removes secrets from text. Cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form to hide, longest first so a secret containing another is hidden whole.
    forms: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut forms = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            forms.push(secret.to_string());
            let encoded =
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            forms.push(encoded);
            forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        }
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        forms.dedup();
        Redactor { forms }
    }

    /// The values of `names` in a settings object (strings as they are, other values as JSON).
    pub fn from_settings(settings: &serde_json::Value, names: &[String]) -> Redactor {
        let values = names.iter().filter_map(|name| match settings.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        });
        Redactor::new(values)
    }

    /// `text` with every secret replaced. A short secret is replaced only where it stands
    /// alone (between characters that are not letters or digits): masking every `t` inside
    /// words would make messages unreadable without hiding anything more.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for form in &self.forms {
            if !out.contains(form.as_str()) {
                continue;
            }
            out = if form.chars().count() >= SHORT {
                out.replace(form.as_str(), MASK)
            } else {
                replace_standalone(&out, form)
            };
        }
        out
    }

    /// A URL fit for a log line.
    pub fn url(&self, url: &str) -> String {
        let Ok(mut parsed) = url::Url::parse(url) else {
            return self.text(url);
        };
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("redacted"));
        }
        if parsed.query().is_some() {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(name, value)| {
                    let lower = name.to_ascii_lowercase();
                    let secret = SECRET_PARAMS.iter().any(|p| lower.contains(p));
                    let value = if secret { MASK.to_string() } else { self.text(&value) };
                    (name.into_owned(), value)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        self.text(parsed.as_str())
    }
}

/// Secrets shorter than this are masked only where they stand alone.
const SHORT: usize = 8;

fn replace_standalone(text: &str, form: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(form) {
        let before = text[..at].chars().next_back();
        let after = text[at + form.len()..].chars().next();
        let alone =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        if alone {
            out.push_str(&text[copied..at]);
            out.push_str(MASK);
            copied = at + form.len();
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_removed_raw_and_encoded() {
        let r = Redactor::new(["p@ss word", "tok123"]);
        assert_eq!(r.text("Bearer tok123"), "Bearer REDACTED");
        let url = r.url("https://x.example/a?user=me&pw=p%40ss%20word&q=tok123");
        assert!(!url.contains("tok123") && !url.contains("p%40ss"), "{url}");
        assert!(url.contains("user=me"), "{url}");
    }

    #[test]
    fn credential_parameters_and_passwords_are_masked() {
        let r = Redactor::default();
        let url = r.url("https://me:hunter2@x.example/a?api_key=abc&page=2&access_token=def");
        assert!(!url.contains("hunter2") && !url.contains("abc") && !url.contains("def"), "{url}");
        assert!(url.contains("page=2"), "{url}");
    }

    #[test]
    fn short_secrets_are_masked_where_they_stand_alone() {
        let r = Redactor::new(["t0k"]);
        assert_eq!(r.text("token=t0k, settings t0ken"), "token=REDACTED, settings t0ken");
        assert_eq!(r.url("https://x.example/a?ref=t0k"), "https://x.example/a?ref=REDACTED");
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let r = Redactor::new(["tok123"]);
        assert!(!format!("{r:?}").contains("tok123"));
    }
}
