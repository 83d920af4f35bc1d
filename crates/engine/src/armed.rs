//! Which connections a new read can reach without waking the poller.
//!
//! A read submitted while the poller thread sleeps normally costs a wake-up:
//! a waker write on the submitting thread, a poll return and a cross-CPU
//! wake on the poller's. It is wasted when the socket is *armed*: the
//! poller's last read drained it (a short read or `EAGAIN`) and saw no
//! hang-up, so edge-triggered readiness will wake the poller when bytes
//! come, and every turn takes the queued submissions before it reads. A
//! request-response protocol submits its next read right after each
//! completion, almost always on an armed socket, so this saves a hop between
//! threads per message.
//!
//! One entry per connection slot, written only by the poller thread: the
//! connection's generation + 1 while it is armed, else 0, so that a stale or
//! unknown id never reads as armed. The entries are zeroed memory that the
//! kernel maps on first touch: a slot costs two bytes once used.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::op::{slot_of, ConnId, SLOT_BITS};

pub(crate) struct Armed {
    slots: Box<[AtomicU16]>,
}

fn mark(id: ConnId) -> u16 {
    // Generations have 32 - SLOT_BITS = 12 bits: + 1 still fits.
    (id >> SLOT_BITS) as u16 + 1
}

impl Armed {
    pub fn new() -> Armed {
        let zeroed = vec![0u16; 1 << SLOT_BITS].into_boxed_slice();
        // SAFETY: AtomicU16 has the same size, alignment and bit validity as
        // u16, so a slice of one is a valid slice of the other; the box is
        // freed with the same layout it was allocated with.
        let slots = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU16]) };
        Armed { slots }
    }

    /// The poller read `id`'s socket dry: bytes to come will raise an edge.
    pub fn arm(&self, id: ConnId) {
        let entry = &self.slots[slot_of(id)];
        // Only this thread writes: its own last store is what a relaxed load sees.
        if entry.load(Ordering::Relaxed) != mark(id) {
            entry.store(mark(id), Ordering::SeqCst);
        }
    }

    /// Readiness is noted on `slot`'s socket, or the slot changes hands.
    pub fn disarm(&self, slot: usize) {
        if let Some(entry) = self.slots.get(slot).filter(|e| e.load(Ordering::Relaxed) != 0) {
            entry.store(0, Ordering::SeqCst);
        }
    }

    pub fn is_armed(&self, id: ConnId) -> bool {
        self.slots[slot_of(id)].load(Ordering::SeqCst) == mark(id)
    }
}
