//! The handle that every emulator is: the running server, the address it listens on, and what
//! the server and the handle share, with the calls every emulator answers the same way (its URL,
//! its request log, its armed faults). Each emulator names its handle (`ConnectWiseEmulator`…)
//! and adds its own calls for its data and quirks. Dropping a handle stops its server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

use crate::fault_rules::{FaultBook, FaultRule};
use crate::request_log::{Entry, RequestLog};
use crate::serve::{Listener, Server};

/// What an emulator's server and handle share, as far as the common calls need it.
pub trait SharedState: Send + Sync + 'static {
    type Entry: Entry;
    type Scope;
    type Fault: Clone;

    fn log(&self) -> &RequestLog<Self::Entry>;

    fn faults(&self) -> &FaultBook<Self::Scope, Self::Fault>;

    /// Runs when the handle is dropped, before the server stops: lets go of anything that
    /// would keep a request waiting.
    fn stopping(&self) {}
}

/// A running emulator; dropping it stops the server.
pub struct Emulator<S: SharedState> {
    pub(crate) shared: Arc<S>,
    pub(crate) addr: SocketAddr,
    _server: Server,
}

impl<S: SharedState> Emulator<S> {
    /// Serves `router`, built on `shared`, on `listener` from a thread named `thread`.
    pub(crate) fn serve(
        listener: Listener,
        thread: &str,
        shared: Arc<S>,
        router: Router,
    ) -> io::Result<Emulator<S>> {
        let addr = listener.addr();
        let server = listener.serve(thread, router)?;
        Ok(Emulator { shared, addr, _server: server })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    // Request log.

    /// Every request received since the start or the last `clear_log`, in arrival order.
    pub fn requests(&self) -> Vec<S::Entry> {
        self.shared.log().entries()
    }

    /// Forgets the logged requests and the counters.
    pub fn clear_log(&self) {
        self.shared.log().clear();
    }

    // Faults.

    /// Arms a fault (see the emulator's `FaultRule`).
    pub fn inject(&self, rule: FaultRule<S::Scope, S::Fault>) {
        self.shared.faults().add(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// Rules that could still fire.
    pub fn armed_faults(&self) -> usize {
        self.shared.faults().armed()
    }
}

impl<S: SharedState> Drop for Emulator<S> {
    fn drop(&mut self) {
        self.shared.stopping();
    }
}
