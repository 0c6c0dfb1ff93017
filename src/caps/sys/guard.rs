//! A v2 service's defences against its peers, on top of the connection
//! layer's (`caps::conn`): connections taken off with their uid's count
//! and budget, the hello deadline sweep, the budget's accounting.

use std::time::Instant;

use super::service::{Connection, Service};
use crate::caps::cred::Cred;

impl Service {
    /// Take connection `k` off the table (and off its uid's count and
    /// the budget), closed.
    pub(super) fn remove_conn(&mut self, k: u64) -> Option<Connection> {
        let mut c = self.conns.remove(&k)?;
        self.core.remove(&mut c.link);
        Some(c)
    }

    /// Drop the connections whose hello is overdue (`pump` read what
    /// they sent), one log line for all.
    pub(super) fn hello_sweep(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.link.hello_overdue(now))
            .map(|(k, _)| *k)
            .collect();
        let mut last = Cred::default();
        for &k in &overdue {
            if let Some(c) = self.remove_conn(k) {
                last = c.link.peer;
            }
        }
        self.core.log_hello_drops(overdue.len(), &last);
    }

    /// When the next connection without a hello is due to be dropped.
    pub(super) fn hello_due(&self) -> Option<Instant> {
        self.conns.values().filter_map(|c| c.link.hello_due()).min()
    }

    /// Bring the budget up to date with what connection `k` buffers now.
    pub(super) fn account(&mut self, k: u64) {
        if let Some(c) = self.conns.get_mut(&k) {
            self.core.account(&mut c.link, c.queued_bytes);
        }
    }
}
