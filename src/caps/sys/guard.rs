//! A v2 service's defences against its peers, on top of the connection
//! layer's (`caps::conn`): connections taken off with their uid's count
//! and budget, the hello deadline sweep, the budget's accounting.

use std::time::Instant;

use super::service::{Connection, Service};
use crate::caps::conn::{HelloSweep, QUIET, ReadEnd};

impl Service {
    /// Take connection `k` off the table (and off its uid's count and
    /// the budget), closed; `why`: the peer's doing, if it was
    /// (`conn::Service::ended`).
    pub(super) fn remove_conn(&mut self, k: u64, why: Option<&ReadEnd>) -> Option<Connection> {
        let mut c = self.conns.remove(&k)?;
        self.unwatch_conn(k, c.link.tx.raw());
        self.core.ended(&mut c.link, why);
        Some(c)
    }

    /// Drop the connections whose hello is overdue (`pump` read what
    /// they sent), one log line for all. (Nothing to do, and no clock
    /// read, while every connection has said hello.)
    pub(super) fn hello_sweep(&mut self) {
        self.quiet_sweep();
        if self.w.hello.is_empty() {
            return;
        }
        let conns = &self.conns;
        let mut sweep = HelloSweep::select(
            self.w
                .hello
                .iter()
                .filter_map(|k| conns.get(k).map(|c| (*k, &c.link))),
        );
        for k in sweep.take() {
            if let Some(c) = self.conns.get(&k) {
                sweep.dropped(&c.link);
                self.remove_conn(k, None);
            }
        }
        sweep.finish(&mut self.core);
    }

    /// Every `QUIET` while some connection's rings are awake: let those
    /// whose rings did not move since the last sweep give their pages of
    /// the region back (`Transport::quiet`). (No clock read while no
    /// ring is awake.)
    fn quiet_sweep(&mut self) {
        let now = match self.quiet_at {
            None => {
                if !self.w.rings.is_empty() {
                    self.quiet_at = Some(Instant::now() + QUIET);
                }
                return;
            }
            Some(at) => match Instant::now() {
                now if now >= at => now,
                _ => return,
            },
        };
        let awake: Vec<u64> = self.w.rings.iter().copied().collect();
        for k in awake {
            if let Some(c) = self.conns.get_mut(&k) {
                c.link.tx.quiet();
            }
            self.track(k);
        }
        self.quiet_at = (!self.w.rings.is_empty()).then(|| now + QUIET);
    }

    /// When the next connection without a hello is due to be dropped, or
    /// the quiet sweep is due (the waiter's poll ends then).
    pub(super) fn hello_due(&self) -> Option<Instant> {
        self.w
            .hello
            .iter()
            .filter_map(|k| self.conns.get(k)?.link.hello_due())
            .chain(self.quiet_at)
            .min()
    }

    /// Bring the budget up to date with what connection `k` buffers now.
    pub(super) fn account(&mut self, k: u64) {
        if let Some(c) = self.conns.get_mut(&k) {
            self.core.account(&mut c.link, c.queued_bytes);
        }
    }
}
