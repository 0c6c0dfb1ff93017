//! A v2 service's defences against its peers: connections taken off
//! with their uid's count and budget, the hello deadline sweep, the
//! memory budget's accounting. The limits themselves live in `conn`
//! (shared with v1).

use super::*;

impl Svc {
    /// Take connection `k` off the table (and off its uid's count).
    pub(super) fn remove_conn(&mut self, k: u64) -> Option<SConn> {
        let mut c = self.conns.remove(&k)?;
        self.gate.release(c.cred.uid);
        self.budget
            .update(c.cred.uid, std::mem::take(&mut c.charged), 0);
        c.conn.close();
        Some(c)
    }

    /// Drop the connections whose hello is overdue (`pump` read what
    /// they sent), one log line for all.
    pub(super) fn hello_sweep(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.hello_done && c.conn.hello_overdue(now))
            .map(|(k, _)| *k)
            .collect();
        let mut last = Cred::default();
        for &k in &overdue {
            if let Some(c) = self.remove_conn(k) {
                last = c.cred;
            }
        }
        log_hello_drops(
            "caps_sys_service",
            &self.listener.path.display(),
            overdue.len(),
            &last,
        );
    }

    /// When the next connection without a hello is due to be dropped.
    pub(super) fn hello_due(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter(|c| !c.hello_done)
            .map(|c| c.conn.since + HELLO_DEADLINE)
            .min()
    }

    /// Bring the budget up to date with what connection `k` buffers now.
    pub(super) fn account(&mut self, k: u64) {
        if let Some(c) = self.conns.get_mut(&k) {
            let now = c.queued_bytes + c.conn.queued();
            let was = std::mem::replace(&mut c.charged, now);
            self.budget.update(c.cred.uid, was, now);
        }
    }
}
