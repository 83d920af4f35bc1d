//! The deadline heap that drives the poll timeout.
//!
//! Each request with a deadline holds a [`Key`] to its entry. A request that
//! finishes first removes its key: the entry stays in the heap but is marked
//! dead, dead entries are dropped as soon as they reach the top, and the heap
//! is rebuilt when dead entries outnumber live ones. So the top is always live:
//! the poll timeout is the earliest live deadline, no wake-up comes for a
//! request that is gone, and the heap stays proportional to the live entries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::op::ConnId;

/// Dead entries tolerated beyond the live count before a rebuild: it keeps
/// small heaps from being rebuilt at every removal.
const SLACK: usize = 16;

/// Names one deadline entry: a slot in the table of live entries, and the
/// entry's arrival number, which a reused slot never repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    slot: u32,
    order: u64,
}

#[derive(Default)]
pub(crate) struct Deadlines {
    /// (when, order of arrival, connection, slot): equal deadlines expire in
    /// the order they were set, so one connection's requests stay in order.
    heap: BinaryHeap<Reverse<(Instant, u64, ConnId, u32)>>,
    /// The arrival number of the live entry in each slot; 0 when free.
    live: Vec<u64>,
    free: Vec<u32>,
    live_count: usize,
    added: u64,
}

impl Deadlines {
    /// True when no request has a deadline pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn add(&mut self, at: Instant, conn: ConnId) -> Key {
        self.added += 1;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.live.push(0);
            u32::try_from(self.live.len() - 1).expect("fewer than 2^32 pending deadlines")
        });
        self.live[slot as usize] = self.added;
        self.live_count += 1;
        self.heap.push(Reverse((at, self.added, conn, slot)));
        Key { slot, order: self.added }
    }

    /// The request holding `key` finished before its deadline (or expired):
    /// its entry no longer counts. Removing a key twice is harmless.
    pub fn remove(&mut self, key: Key) {
        if self.release(key.slot, key.order) {
            self.tidy();
        }
    }

    /// How long the poller may sleep before the earliest live deadline.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, ..))| at.saturating_duration_since(now))
    }

    /// The next live entry that is due at `now`, if any; it is removed, and
    /// the caller expires the request on the connection it names.
    pub fn pop_due(&mut self, now: Instant) -> Option<(ConnId, Key)> {
        match self.heap.peek() {
            Some(Reverse((at, ..))) if *at <= now => {
                let Reverse((_, order, conn, slot)) = self.heap.pop().expect("peeked");
                let released = self.release(slot, order);
                debug_assert!(released, "the top entry is always live");
                self.tidy();
                Some((conn, Key { slot, order }))
            }
            _ => None,
        }
    }

    /// Frees the entry's slot if the entry is still live.
    fn release(&mut self, slot: u32, order: u64) -> bool {
        let live = self.live.get_mut(slot as usize).filter(|o| **o == order);
        let Some(live) = live else { return false };
        *live = 0;
        self.free.push(slot);
        self.live_count -= 1;
        true
    }

    /// After an entry died: keeps the top live, so that the timeout is a live
    /// request's, and rebuilds the heap from its live entries once the dead
    /// ones outnumber them (amortized: each rebuild follows as many deaths).
    fn tidy(&mut self) {
        while let Some(Reverse((_, order, _, slot))) = self.heap.peek() {
            if self.live[*slot as usize] == *order {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.live_count + SLACK {
            let live = &self.live;
            self.heap.retain(|Reverse((_, order, _, slot))| live[*slot as usize] == *order);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    #[test]
    fn pops_in_time_order_and_only_when_due() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        let late = d.add(now + Duration::from_millis(20), 1);
        let early = d.add(now + Duration::from_millis(10), 2);
        assert_eq!(d.timeout(now), Some(Duration::from_millis(10)));
        assert_eq!(d.pop_due(now), None);
        assert_eq!(d.pop_due(now + Duration::from_millis(15)), Some((2, early)));
        assert_eq!(d.pop_due(now + Duration::from_millis(25)), Some((1, late)));
        assert_eq!(d.timeout(now), None);
    }

    #[test]
    fn a_removed_entry_no_longer_sets_the_timeout() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        let near = d.add(now + Duration::from_millis(10), 1);
        d.add(now + Duration::from_millis(30), 1);
        d.remove(near);
        d.remove(near);
        assert_eq!(d.timeout(now), Some(Duration::from_millis(30)));
        assert_eq!(d.pop_due(now + Duration::from_millis(20)), None);
    }

    #[test]
    fn dead_entries_are_dropped_once_they_outnumber_live_ones() {
        let now = Instant::now();
        let mut d = Deadlines::default();
        let keep = d.add(now, 0);
        let keys: Vec<_> = (0..2000).map(|_| d.add(now + Duration::from_secs(1), 0)).collect();
        for key in keys {
            d.remove(key);
        }
        assert!(d.heap.len() <= 2 + SLACK, "{} entries left", d.heap.len());
        assert_eq!(d.pop_due(now), Some((0, keep)));
        assert!(d.is_empty());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add { at: u64, conn: ConnId },
        /// Removes one of the live keys.
        Remove(Index),
        /// Removes one of the keys handed out so far, live or not.
        RemoveAny(Index),
        PopDue { now: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct times, so equal deadlines are common.
        prop_oneof![
            4 => (0..20u64, 0..4u32).prop_map(|(at, conn)| Op::Add { at, conn }),
            3 => any::<Index>().prop_map(Op::Remove),
            1 => any::<Index>().prop_map(Op::RemoveAny),
            1 => (0..25u64).prop_map(|now| Op::PopDue { now }),
        ]
    }

    /// A model entry: deadline in ms, arrival, connection, key, still live.
    struct Entry {
        at: u64,
        conn: ConnId,
        key: Key,
        live: bool,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Against a plain list: pop_due returns the earliest live entry (the
        /// first set among equals) and only once it is due; the timeout is the
        /// earliest live deadline; the heap holds exactly the live entries plus
        /// a bounded number of dead ones; and what is left drains in order.
        #[test]
        fn deadlines_behave_like_a_sorted_list_of_live_entries(ops in prop::collection::vec(op(), 1..400)) {
            let base = Instant::now();
            let ms = |n: u64| base + Duration::from_millis(n);
            let mut d = Deadlines::default();
            let mut model: Vec<Entry> = Vec::new();
            for op in ops {
                match op {
                    Op::Add { at, conn } => {
                        let key = d.add(ms(at), conn);
                        model.push(Entry { at, conn, key, live: true });
                    }
                    Op::Remove(i) => {
                        let mut live: Vec<&mut Entry> = model.iter_mut().filter(|e| e.live).collect();
                        if !live.is_empty() {
                            let i = i.index(live.len());
                            live[i].live = false;
                            d.remove(live[i].key);
                        }
                    }
                    Op::RemoveAny(i) if !model.is_empty() => {
                        let i = i.index(model.len());
                        model[i].live = false;
                        d.remove(model[i].key);
                    }
                    Op::RemoveAny(_) => {}
                    Op::PopDue { now } => {
                        // Arrival order breaks ties: min_by_key keeps the first.
                        let due = model.iter_mut().filter(|e| e.live && e.at <= now).min_by_key(|e| e.at);
                        let expected = due.map(|e| {
                            e.live = false;
                            (e.conn, e.key)
                        });
                        prop_assert_eq!(d.pop_due(ms(now)), expected);
                    }
                }
                let live: Vec<_> = model.iter().filter(|e| e.live).collect();
                let earliest = live.iter().map(|e| e.at).min();
                prop_assert_eq!(d.timeout(base), earliest.map(Duration::from_millis));
                prop_assert_eq!(d.is_empty(), live.is_empty());
                let mut in_heap: Vec<u64> = d.heap.iter()
                    .filter(|Reverse((_, order, _, slot))| d.live[*slot as usize] == *order)
                    .map(|Reverse((_, order, ..))| *order)
                    .collect();
                in_heap.sort_unstable();
                let expected: Vec<u64> = live.iter().map(|e| e.key.order).collect();
                prop_assert_eq!(in_heap, expected);
                prop_assert!(d.heap.len() <= 2 * live.len() + SLACK, "{} entries for {} live", d.heap.len(), live.len());
            }
            let rest: Vec<_> = std::iter::from_fn(|| d.pop_due(ms(1000))).map(|(_, key)| key).collect();
            let mut live: Vec<&Entry> = model.iter().filter(|e| e.live).collect();
            live.sort_by_key(|e| (e.at, e.key.order));
            prop_assert_eq!(rest, live.iter().map(|e| e.key).collect::<Vec<_>>());
        }
    }
}
