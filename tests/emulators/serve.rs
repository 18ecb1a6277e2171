//! How every emulator runs: a listener bound to 127.0.0.1 on a free port, and a server on its own
//! thread with its own tokio runtime (so synchronous tests and async code alike can use an
//! emulator), serving each connection itself so that a fault can close one without answering,
//! and stopping everything when its handle is dropped. It knows nothing of any PSA: an emulator
//! hands it a router and keeps the handle. It must never listen beyond the loopback address.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};

/// How long a stopping server waits for its runtime's tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A loopback port taken before the server starts, so that the emulator's shared state can know
/// its address before the router is built.
pub(crate) struct Listener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `127.0.0.1:0`.
    pub(crate) fn bind() -> io::Result<Listener> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(Listener { listener, addr })
    }

    /// `127.0.0.1:PORT`
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `router` on a thread named `name`, with a two-worker runtime of the same name.
    pub(crate) fn serve(self, name: &str, router: Router) -> io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        let (shutdown, stop) = oneshot::channel();
        let listener = self.listener;
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            runtime.block_on(accept_loop(listener, router, stop));
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        })?;
        Ok(Server { shutdown: Some(shutdown), thread: Some(thread) })
    }
}

/// A running server; dropping it stops accepting, drops open connections and joins the thread.
pub(crate) struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Closes one connection from inside a handler, without an answer. Every request carries the
/// switch of its connection as an extension.
#[derive(Clone, Default)]
pub(crate) struct KillSwitch(Arc<Notify>);

impl KillSwitch {
    pub(crate) fn trigger(&self) {
        self.0.notify_one();
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    router: Router,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(serve_connection(stream, router.clone()));
            }
        }
    }
}

/// Serves one connection until the client closes it or a handler triggers its kill switch.
async fn serve_connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let kill = KillSwitch::default();
    let service = TowerToHyperService::new(router.layer(Extension(kill.clone())));
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = kill.0.notified() => {}
    }
}
