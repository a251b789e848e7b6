//! Rate-limits the log lines of refused requests, per peer address.
//!
//! Every refusal is counted in the metrics, but a client retrying a bad
//! token in a loop (or an attacker guessing) must not flood the log or the
//! disk. The first refusal from an address is logged at once; further ones
//! within [`WINDOW`] are only counted, and the next line logged for that
//! address says how many were left out. Ports are ignored: each new
//! connection has a new one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long refusals from one address are summarised after one is logged.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How many addresses are tracked at once. Beyond that, refusals from new
/// addresses share one entry, so that a flood from many addresses costs
/// bounded memory and still a bounded number of lines.
const MAX_PEERS: usize = 4096;

/// Which refusals to log, per peer address.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Keyed by address; `None` for unknown peers and for addresses beyond
    /// [`MAX_PEERS`].
    peers: Mutex<HashMap<Option<IpAddr>, Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    suppressed: u64,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, saying that `suppressed` refusals from the same address were
    /// not logged since the last line.
    Log { suppressed: u64 },
    /// Count it only.
    Suppress,
}

/// Refusals whose window ended before they could be reported with a later
/// refusal: `(address, count)`, for one summary line each.
pub type Expired = Vec<(Option<IpAddr>, u64)>;

impl RefusalLog {
    /// Records a refusal from `peer` at `now`; returns whether to log it,
    /// and the counts of addresses dropped to keep the table bounded.
    pub fn record(&self, peer: Option<IpAddr>, now: Instant) -> (Verdict, Expired) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut expired = Vec::new();
        let mut key = peer;
        if !peers.contains_key(&key) && peers.len() >= MAX_PEERS {
            peers.retain(|addr, w| {
                let keep = now.saturating_duration_since(w.started) < WINDOW;
                if !keep && w.suppressed > 0 {
                    expired.push((*addr, w.suppressed));
                }
                keep
            });
            if peers.len() >= MAX_PEERS {
                key = None;
            }
        }
        let verdict = match peers.get_mut(&key) {
            Some(w) if now.saturating_duration_since(w.started) < WINDOW => {
                w.suppressed += 1;
                Verdict::Suppress
            }
            Some(w) => {
                let suppressed = w.suppressed;
                *w = Window {
                    started: now,
                    suppressed: 0,
                };
                Verdict::Log { suppressed }
            }
            None => {
                peers.insert(
                    key,
                    Window {
                        started: now,
                        suppressed: 0,
                    },
                );
                Verdict::Log { suppressed: 0 }
            }
        };
        (verdict, expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn one_line_per_address_and_window_with_the_count_left_out() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.record(ip(1), t0).0, Verdict::Log { suppressed: 0 });
        for i in 1..=99 {
            let at = t0 + Duration::from_millis(i * 10);
            assert_eq!(log.record(ip(1), at).0, Verdict::Suppress);
        }
        // Another address is logged on its own.
        assert_eq!(log.record(ip(2), t0).0, Verdict::Log { suppressed: 0 });
        // After the window, the next line tells what was left out.
        assert_eq!(
            log.record(ip(1), t0 + WINDOW).0,
            Verdict::Log { suppressed: 99 }
        );
        assert_eq!(log.record(ip(1), t0 + WINDOW).0, Verdict::Suppress);
    }

    #[test]
    fn many_addresses_cost_bounded_memory_and_lose_no_count() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        let addr = |i: usize| Some(IpAddr::from((i as u32 + 1).to_be_bytes()));
        for i in 0..MAX_PEERS {
            log.record(addr(i), t0);
            log.record(addr(i), t0);
        }
        // The table is full: a new address shares the overflow entry.
        let (verdict, expired) = log.record(addr(MAX_PEERS), t0);
        assert_eq!(verdict, Verdict::Log { suppressed: 0 });
        assert!(expired.is_empty());
        assert_eq!(log.record(addr(MAX_PEERS + 1), t0).0, Verdict::Suppress);
        assert!(log.peers.lock().unwrap().len() <= MAX_PEERS + 1);
        // Once their windows end, the old addresses make room, and each one's
        // count is handed back for a summary line.
        let (verdict, expired) = log.record(addr(MAX_PEERS + 2), t0 + WINDOW);
        assert_eq!(verdict, Verdict::Log { suppressed: 0 });
        // Every address, and the shared entry, had one refusal left out.
        assert_eq!(expired.len(), MAX_PEERS + 1);
        assert!(expired.iter().all(|(_, n)| *n == 1));
        assert!(log.peers.lock().unwrap().len() <= 2);
    }
}
