//! The origin (`http://host:port`) an emulator writes into the links it hands out: the host the
//! client addressed, the listening address when a request names none, or an origin a test set
//! to check that a client refuses to follow links elsewhere. It never answers a request.

use std::net::SocketAddr;
use std::sync::Mutex;

use axum::http::{HeaderMap, header};

use crate::lock;

pub(crate) struct Origin {
    /// The address the emulator listens on, for requests without a `Host` header.
    addr: SocketAddr,
    /// Overrides the scheme and host of every link.
    forced: Mutex<Option<String>>,
}

impl Origin {
    pub(crate) fn new(addr: SocketAddr) -> Origin {
        Origin { addr, forced: Mutex::new(None) }
    }

    /// `http://host:port` as the client addressed the emulator, unless overridden.
    pub(crate) fn for_request(&self, headers: &HeaderMap) -> String {
        if let Some(origin) = lock(&self.forced).clone() {
            return origin;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        match host {
            Some(host) if !host.is_empty() => format!("http://{host}"),
            _ => format!("http://{}", self.addr),
        }
    }

    /// Makes every link start with `origin` (trailing `/` dropped); `None` restores the default.
    pub(crate) fn force(&self, origin: Option<&str>) {
        *lock(&self.forced) = origin.map(|o| o.trim_end_matches('/').to_owned());
    }
}
