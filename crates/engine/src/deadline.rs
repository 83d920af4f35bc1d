//! The deadline heap that drives the poll timeout.
//!
//! Entries are not removed when their request completes early; they are
//! skipped when they come due, and the heap is compacted when stale entries
//! outnumber live ones, so a long run with far deadlines stays bounded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::op::{ConnId, ReqId};

#[derive(Default)]
pub(crate) struct Deadlines {
    /// (when, order of arrival, connection, request): equal deadlines expire
    /// in the order they were set, so one connection's requests stay in order.
    heap: BinaryHeap<Reverse<(Instant, u64, ConnId, ReqId)>>,
    added: u64,
    compact_at: usize,
}

impl Deadlines {
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn add(&mut self, at: Instant, conn: ConnId, req: ReqId) {
        self.added += 1;
        self.heap.push(Reverse((at, self.added, conn, req)));
    }

    /// How long the poller may sleep before the earliest deadline.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, ..))| at.saturating_duration_since(now))
    }

    /// The next entry that is due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<(ConnId, ReqId)> {
        match self.heap.peek() {
            Some(Reverse((at, ..))) if *at <= now => self.heap.pop().map(|Reverse((_, _, c, r))| (c, r)),
            _ => None,
        }
    }

    /// Drops the entries of completed requests once the heap has doubled since
    /// the last compaction, so the cost stays proportional to the work done.
    pub fn compact(&mut self, is_pending: impl Fn(ConnId, ReqId) -> bool) {
        if self.heap.len() >= self.compact_at.max(1024) {
            self.heap.retain(|Reverse((_, _, conn, req))| is_pending(*conn, *req));
            self.compact_at = 2 * self.heap.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_and_only_when_due() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        d.add(now + Duration::from_millis(20), 1, 10);
        d.add(now + Duration::from_millis(10), 2, 20);
        assert_eq!(d.timeout(now), Some(Duration::from_millis(10)));
        assert_eq!(d.pop_due(now), None);
        assert_eq!(d.pop_due(now + Duration::from_millis(15)), Some((2, 20)));
        assert_eq!(d.pop_due(now + Duration::from_millis(25)), Some((1, 10)));
        assert_eq!(d.timeout(now), None);
    }

    #[test]
    fn equal_deadlines_expire_in_the_order_they_were_set() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        for req in [9, 3, 7] {
            d.add(now, 1, req);
        }
        let order: Vec<_> = std::iter::from_fn(|| d.pop_due(now)).map(|(_, r)| r).collect();
        assert_eq!(order, vec![9, 3, 7]);
    }

    #[test]
    fn compaction_keeps_only_pending_entries() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        for req in 0..2000 {
            d.add(now, 0, req);
        }
        d.compact(|_, req| req == 7);
        assert_eq!(d.pop_due(now), Some((0, 7)));
        assert_eq!(d.pop_due(now), None);
    }
}
