//! The HaloPSA emulator handle: it serves the HaloPSA router on a loopback port (see
//! `crate::serve`) and stops when dropped. Through the handle a test reads the log, arms faults,
//! sets how tokens expire, and reads or changes the data while a sync runs; every such call
//! takes the same lock the handlers take.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use time::macros::format_description;

use super::api;
use super::faults::{Fault, FaultBook, PathScope};
use super::lock;
use super::model::{Client, HaloData, InvoiceLine, Item, RecurringInvoice};
use super::request_log::{LoggedRequest, RequestLog};
use super::tokens::{Credentials, TokenBook, TokenPolicy};
use crate::handle::{Emulator, SharedState};
use crate::serve::Listener;

/// What the server and the handle share.
pub struct Shared {
    pub(crate) data: Mutex<HaloData>,
    pub(crate) log: RequestLog,
    pub(crate) faults: FaultBook,
    pub(crate) tokens: TokenBook,
    pub(crate) credentials: Credentials,
    pub(crate) upserts: Mutex<u64>,
    /// The address the emulator listens on, for requests without a `Host` header.
    pub(crate) addr: SocketAddr,
}

impl Shared {
    /// Now, as Halo writes `last_modified` (UTC, milliseconds, no offset).
    pub(crate) fn now(&self) -> String {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]"
        );
        OffsetDateTime::now_utc().format(format).unwrap_or_default()
    }
}

impl SharedState for Shared {
    type Entry = LoggedRequest;
    type Scope = PathScope;
    type Fault = Fault;

    fn log(&self) -> &RequestLog {
        &self.log
    }

    fn faults(&self) -> &FaultBook {
        &self.faults
    }
}

/// A running HaloPSA emulator; dropping it stops the server.
pub type HaloEmulator = Emulator<Shared>;

impl HaloEmulator {
    /// Starts an emulator serving `data` with the default credentials.
    ///
    /// # Panics
    ///
    /// When no loopback port or runtime can be had; use `try_start` to handle that.
    pub fn start(data: HaloData) -> HaloEmulator {
        match HaloEmulator::try_start(data, Credentials::default()) {
            Ok(emulator) => emulator,
            Err(e) => panic!("cannot start the HaloPSA emulator: {e}"),
        }
    }

    /// Starts an emulator serving `data` that accepts `credentials`.
    pub fn try_start(data: HaloData, credentials: Credentials) -> io::Result<HaloEmulator> {
        let listener = Listener::bind()?;
        let addr = listener.addr();
        let shared = Arc::new(Shared {
            data: Mutex::new(data),
            log: RequestLog::default(),
            faults: FaultBook::default(),
            tokens: TokenBook::default(),
            credentials,
            upserts: Mutex::new(0),
            addr,
        });
        let router = api::router(shared.clone());
        Emulator::serve(listener, "halo-emulator", shared, router)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    pub fn client_id(&self) -> &str {
        &self.shared.credentials.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.shared.credentials.client_secret
    }

    // Request log.

    /// Requests whose path matches `pattern` (as in `FaultRule::new`, e.g. `api/client`).
    pub fn request_count(&self, pattern: &str) -> usize {
        self.shared.log.count_matching(pattern, |path| path.trim_start_matches('/'))
    }

    // Tokens.

    /// How tokens issued from now on expire (default: after an hour).
    pub fn set_token_policy(&self, policy: TokenPolicy) {
        self.shared.tokens.set_policy(policy);
    }

    /// Expires every token issued so far: the next API request with one answers 401.
    pub fn expire_tokens(&self) {
        self.shared.tokens.expire_all();
    }

    /// Tokens issued since the start.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens.issued()
    }

    /// A valid token, issued as `POST /auth/token` would, for tests that call the API directly.
    pub fn issue_token(&self) -> String {
        self.shared.tokens.issue().0
    }

    // Data.

    /// Runs `f` on the data under the lock, for changes that must happen at once.
    pub fn with_data<R>(&self, f: impl FnOnce(&mut HaloData) -> R) -> R {
        f(&mut lock(&self.shared.data))
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> HaloData {
        lock(&self.shared.data).clone()
    }

    /// Upserts the API has applied.
    pub fn upserts(&self) -> u64 {
        *lock(&self.shared.upserts)
    }

    pub fn client(&self, id: i64) -> Option<Client> {
        lock(&self.shared.data).clients.iter().find(|c| c.id == id).cloned()
    }

    pub fn invoice(&self, id: i64) -> Option<RecurringInvoice> {
        lock(&self.shared.data).invoices.iter().find(|i| i.id == id).cloned()
    }

    pub fn line(&self, invoice: i64, line: i64) -> Option<InvoiceLine> {
        self.invoice(invoice).and_then(|i| i.line(line).cloned())
    }

    /// Adds or replaces a client (by id).
    pub fn put_client(&self, client: Client) {
        let mut data = lock(&self.shared.data);
        data.clients.retain(|c| c.id != client.id);
        data.clients.push(client);
    }

    pub fn remove_client(&self, id: i64) -> Option<Client> {
        let mut data = lock(&self.shared.data);
        let index = data.clients.iter().position(|c| c.id == id)?;
        Some(data.clients.remove(index))
    }

    /// Adds or replaces an item (by id).
    pub fn put_item(&self, item: Item) {
        let mut data = lock(&self.shared.data);
        data.items.retain(|i| i.id != item.id);
        data.items.push(item);
    }

    /// Adds or replaces a recurring invoice (by id), lines included.
    pub fn put_invoice(&self, invoice: RecurringInvoice) {
        let mut data = lock(&self.shared.data);
        data.invoices.retain(|i| i.id != invoice.id);
        data.invoices.push(invoice);
    }

    pub fn remove_invoice(&self, id: i64) -> Option<RecurringInvoice> {
        let mut data = lock(&self.shared.data);
        let index = data.invoices.iter().position(|i| i.id == id)?;
        Some(data.invoices.remove(index))
    }

    /// Changes one line as a user editing it in Halo would: the invoice's `last_modified`
    /// moves. False when there is no such line.
    pub fn update_line(
        &self,
        invoice: i64,
        line: i64,
        change: impl FnOnce(&mut InvoiceLine),
    ) -> bool {
        let now = self.shared.now();
        let mut data = lock(&self.shared.data);
        let Some(invoice) = data.invoices.iter_mut().find(|i| i.id == invoice) else {
            return false;
        };
        let Some(found) = invoice.lines.iter_mut().find(|l| l.id == line) else { return false };
        change(found);
        found.id = line;
        invoice.last_modified = now;
        true
    }

    /// Removes one line from its invoice, as deleting it in Halo would.
    pub fn remove_line(&self, invoice: i64, line: i64) -> Option<InvoiceLine> {
        let now = self.shared.now();
        let mut data = lock(&self.shared.data);
        let invoice = data.invoices.iter_mut().find(|i| i.id == invoice)?;
        let index = invoice.lines.iter().position(|l| l.id == line)?;
        invoice.last_modified = now;
        Some(invoice.lines.remove(index))
    }
}
