//! Where a session's requests may go: the hosts its plugin declared when the session opened.
//!
//! Credentials travel in the requests a plugin builds, so a request to any other host (a
//! "next page" link pointing elsewhere, a typo, a hostile plugin) is refused before anything
//! is sent. Plain `http://` is allowed only to loopback addresses. This module decides; it
//! never sends.

use std::net::IpAddr;

use url::Url;

use super::HttpError;

/// The hosts one session may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations {
    allowed: Vec<Allowed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    /// Lower case; IPv6 addresses in brackets, as `Url::host_str` writes them.
    host: String,
    /// `None`: only the scheme's default port.
    port: Option<u16>,
    /// As the plugin wrote it, for messages.
    text: String,
}

impl Destinations {
    /// Reads `host` and `host:port` entries (`[::1]:8080` for IPv6).
    pub fn new(hosts: &[String]) -> Result<Destinations, HttpError> {
        let allowed = hosts.iter().map(|text| parse_entry(text)).collect::<Result<_, _>>()?;
        Ok(Destinations { allowed })
    }

    /// The hosts as declared.
    pub fn hosts(&self) -> Vec<String> {
        self.allowed.iter().map(|a| a.text.clone()).collect()
    }

    /// Parses `url` and checks it may be sent to. `shown` is the URL as logs may show it.
    pub fn check(&self, url: &str, shown: &str) -> Result<Url, HttpError> {
        let parsed = Url::parse(url)
            .map_err(|e| HttpError::InvalidUrl { url: shown.to_string(), reason: e.to_string() })?;
        let Some(host) = parsed.host_str().map(str::to_ascii_lowercase) else {
            return Err(HttpError::InvalidUrl {
                url: shown.to_string(),
                reason: "it has no host".to_string(),
            });
        };
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => return Err(HttpError::InsecureScheme { url: shown.to_string() }),
            other => {
                return Err(HttpError::InvalidUrl {
                    url: shown.to_string(),
                    reason: format!("scheme `{other}` is not http or https"),
                });
            }
        }
        let port = parsed.port_or_known_default();
        let allowed = self.allowed.iter().any(|a| {
            a.host == host
                && match a.port {
                    Some(p) => port == Some(p),
                    None => parsed.port().is_none(),
                }
        });
        if !allowed {
            let shown_host = match parsed.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            return Err(HttpError::HostNotAllowed { host: shown_host, allowed: self.hosts() });
        }
        Ok(parsed)
    }
}

fn parse_entry(text: &str) -> Result<Allowed, HttpError> {
    let invalid = |reason: &str| HttpError::InvalidHost {
        host: text.to_string(),
        reason: reason.to_string(),
    };
    let entry = text.trim().to_ascii_lowercase();
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(|| invalid("unclosed `[`"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| invalid("expected `:port`"))?),
        };
        (format!("[{addr}]"), port)
    } else {
        match entry.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (entry.clone(), None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(invalid("write a host name or `host:port`, without scheme or path"));
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| invalid("the port is not a number"))?),
        None => None,
    };
    Ok(Allowed { host, port, text: text.to_string() })
}

/// `localhost`, 127.0.0.0/8 and `::1`.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(hosts: &[&str]) -> Destinations {
        Destinations::new(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn only_declared_hosts_and_ports_pass() {
        let d = dest(&["api.example.com", "127.0.0.1:8080", "[::1]:9000"]);
        assert!(d.check("https://api.example.com/v1", "").is_ok());
        assert!(d.check("https://API.example.com:443/v1", "").is_ok());
        assert!(d.check("http://127.0.0.1:8080/x", "").is_ok());
        assert!(d.check("http://[::1]:9000/x", "").is_ok());
        assert!(matches!(
            d.check("https://api.example.com:8443/v1", ""),
            Err(HttpError::HostNotAllowed { .. })
        ));
        assert!(matches!(
            d.check("https://evil.example.net/v1", ""),
            Err(HttpError::HostNotAllowed { .. })
        ));
        assert!(matches!(
            d.check("http://127.0.0.1:8081/x", ""),
            Err(HttpError::HostNotAllowed { .. })
        ));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let d = dest(&["api.example.com", "localhost:3000"]);
        assert!(matches!(
            d.check("http://api.example.com/v1", ""),
            Err(HttpError::InsecureScheme { .. })
        ));
        assert!(d.check("http://localhost:3000/", "").is_ok());
        assert!(matches!(d.check("ftp://api.example.com/", ""), Err(HttpError::InvalidUrl { .. })));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in ["https://x", "x:port", "[::1", "a b"] {
            assert!(Destinations::new(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
