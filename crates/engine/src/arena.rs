//! Swap arenas: where reads land when the caller gave no memory of its own.
//!
//! gaio hands out a watcher-owned swap buffer that stays valid until the next
//! wait for results. Here there are two arenas. The poller fills one from the
//! front, each read taking the bytes it actually got; the consumer reads the
//! published regions in place. A region delivered by take `k` must stay intact
//! until take `k + 1`, so an arena may be refilled from its start only when
//! every region published from it is at least two takes old. When the filling
//! arena is full and the other is still in use, swap reads wait (the poller
//! calls that starving) and resume after the next take: back-pressure, not
//! loss. A starved poller asks for that take even when it has nothing to
//! deliver, since a consumer that takes only when notified would not.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

/// One block of memory, shared by the poller (writing unpublished regions)
/// and the consumer (reading published ones). It never moves and is freed when
/// the last `Arc` goes, so a view handed to JavaScript can outlive the watcher.
pub struct ArenaMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the memory is plain bytes; who may touch which region when is the
// publication protocol described in the module docs, enforced by the poller.
unsafe impl Send for ArenaMemory {}
// SAFETY: as above.
unsafe impl Sync for ArenaMemory {}

impl ArenaMemory {
    /// Fails with `OutOfMemory` where the system will not give `len` bytes:
    /// a size the caller chose must not abort the process.
    fn new(len: usize) -> io::Result<ArenaMemory> {
        let layout = Self::layout(len)?;
        // SAFETY: the layout's size is not zero (at least 1). Zeroed memory comes
        // from calloc/mmap: its pages cost nothing until touched.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(ArenaMemory { ptr, len: layout.size() })
    }

    fn layout(len: usize) -> io::Result<Layout> {
        Layout::array::<u8>(len.max(1)).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn size(&self) -> usize {
        self.len
    }

    /// Bytes of a published region.
    ///
    /// # Safety
    /// The poller must not be writing `offset..offset + len`: true for a region
    /// delivered by the latest take, until the take after it.
    pub unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset <= self.len && len <= self.len - offset, "swap region out of bounds");
        std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len)
    }
}

impl Drop for ArenaMemory {
    fn drop(&mut self) {
        let layout = Self::layout(self.len).expect("the layout it was allocated with");
        // SAFETY: ptr came from alloc_zeroed with this same layout, and is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// The poller's side of the two arenas.
pub(crate) struct SwapArenas {
    memory: [Arc<ArenaMemory>; 2],
    fill: usize,
    offset: usize,
    /// Arena `i` may be refilled once the take count reaches `reusable_at[i]`.
    reusable_at: [u64; 2],
    /// Which arenas got bytes since the last publication.
    touched: [bool; 2],
}

impl SwapArenas {
    pub fn new(size: usize) -> io::Result<SwapArenas> {
        Ok(SwapArenas {
            memory: [Arc::new(ArenaMemory::new(size)?), Arc::new(ArenaMemory::new(size)?)],
            fill: 0,
            offset: 0,
            reusable_at: [0, 0],
            touched: [false, false],
        })
    }

    pub fn memory(&self) -> [Arc<ArenaMemory>; 2] {
        self.memory.clone()
    }

    /// Room for a read of up to `want` bytes, given the current take count:
    /// `(arena, offset, space)`, or None while both arenas are still in use.
    /// Prefers a fresh arena over a tail too short for the whole `want`.
    pub fn reserve(&mut self, want: usize, takes: u64) -> Option<(usize, usize, &mut [u8])> {
        let other = 1 - self.fill;
        let mut room = self.memory[self.fill].len - self.offset;
        // Unpublished bytes in the other arena are as busy as delivered ones.
        if room < want && !self.touched[other] && takes >= self.reusable_at[other] {
            self.fill = other;
            self.offset = 0;
            room = self.memory[other].len;
        }
        if room == 0 {
            return None;
        }
        let len = want.min(room);
        let arena = &self.memory[self.fill];
        // SAFETY: offset..offset+len lies within the arena and is unpublished, so
        // no consumer reads it and no other region handed out overlaps it.
        let space = unsafe { std::slice::from_raw_parts_mut(arena.as_ptr().add(self.offset), len) };
        Some((self.fill, self.offset, space))
    }

    /// Keeps the first `n` bytes of the last reservation.
    pub fn commit(&mut self, n: usize) {
        self.offset += n;
        self.touched[self.fill] |= n > 0;
    }

    /// Called under the shared lock as completions are published at take count
    /// `takes`: they are delivered by take `takes + 1` and read until `takes + 2`.
    pub fn published(&mut self, takes: u64) {
        for i in 0..2 {
            if std::mem::take(&mut self.touched[i]) {
                self.reusable_at[i] = takes + 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    #[test]
    fn refills_an_arena_only_two_takes_after_publishing_from_it() {
        let mut arenas = SwapArenas::new(8).unwrap();
        let (a, off, _) = arenas.reserve(8, 0).unwrap();
        assert_eq!((a, off), (0, 0));
        arenas.commit(8);
        arenas.published(0);
        // Arena 1 was never used: the poller moves on to it.
        let (a, _, _) = arenas.reserve(4, 0).unwrap();
        assert_eq!(a, 1);
        arenas.commit(8);
        arenas.published(0);
        // Both full and arena 0's bytes not yet released: starve.
        assert!(arenas.reserve(4, 1).is_none());
        // After take 2 arena 0 is free again, from its start.
        let (a, off, space) = arenas.reserve(4, 2).unwrap();
        assert_eq!((a, off, space.len()), (0, 0, 4));
    }

    #[test]
    fn never_refills_an_arena_with_unpublished_bytes() {
        let mut arenas = SwapArenas::new(8).unwrap();
        arenas.reserve(8, 0).unwrap();
        arenas.commit(8);
        arenas.reserve(8, 0).unwrap(); // moves to arena 1; arena 0 is not published yet
        arenas.commit(8);
        assert!(arenas.reserve(8, 5).is_none());
    }

    #[test]
    fn a_short_tail_is_used_when_the_other_arena_is_busy() {
        let mut arenas = SwapArenas::new(8).unwrap();
        arenas.reserve(6, 0).unwrap();
        arenas.commit(6);
        arenas.published(0);
        arenas.reserve(8, 0).unwrap(); // moves to arena 1
        arenas.commit(1);
        arenas.published(0);
        let (a, off, space) = arenas.reserve(8, 1).unwrap();
        assert_eq!((a, off, space.len()), (1, 1, 7));
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A read that wants `want` bytes and gets some of the room it is given.
        Read { want: usize, got: Index },
        Publish,
        Take,
    }

    fn op(size: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..=size + size / 2, any::<Index>()).prop_map(|(want, got)| Op::Read { want, got }),
            2 => Just(Op::Publish),
            1 => Just(Op::Take),
        ]
    }

    /// Bytes the poller kept, tagged so that any later write over them shows.
    struct Region {
        arena: usize,
        offset: usize,
        len: usize,
        tag: u8,
        /// The take count when it was published.
        published: Option<u64>,
    }

    impl Region {
        /// Unpublished, or published and not yet two takes old.
        fn live(&self, takes: u64) -> bool {
            self.published.is_none_or(|at| takes < at + 2)
        }
    }

    fn ops() -> impl Strategy<Value = (usize, Vec<Op>)> {
        (1..48usize).prop_flat_map(|size| (Just(size), prop::collection::vec(op(size), 1..120)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the order of reads, publications and takes: space handed
        /// out lies in its arena and never overlaps a live region; a region
        /// keeps its bytes until it is two takes old; and once nothing is live
        /// a read always gets room.
        #[test]
        fn live_regions_are_never_handed_out_again((size, ops) in ops()) {
            let mut arenas = SwapArenas::new(size).unwrap();
            let memory = arenas.memory();
            let mut takes = 0u64;
            let mut regions: Vec<Region> = Vec::new();
            let mut next_tag = 0u8;
            for op in ops {
                match op {
                    Op::Read { want, got } => {
                        let idle = regions.iter().all(|r| !r.live(takes));
                        match arenas.reserve(want, takes) {
                            Some((arena, offset, space)) => {
                                let len = space.len();
                                prop_assert!(len >= 1 && len <= want && offset + len <= size, "{len} bytes at {offset} for {want}");
                                prop_assert!(!idle || len == want.min(size), "{len} bytes for {want} with nothing live");
                                for r in regions.iter().filter(|r| r.live(takes) && r.arena == arena) {
                                    prop_assert!(offset + len <= r.offset || r.offset + r.len <= offset,
                                        "{offset}+{len} overlaps live {}+{} in arena {arena}", r.offset, r.len);
                                }
                                // Like recv: the whole space may be written, only `n` bytes kept.
                                next_tag = next_tag.wrapping_add(1);
                                space.fill(next_tag);
                                let n = got.index(len + 1);
                                arenas.commit(n);
                                if n > 0 {
                                    regions.push(Region { arena, offset, len: n, tag: next_tag, published: None });
                                }
                            }
                            None => prop_assert!(!idle, "no room for {want} with nothing live"),
                        }
                    }
                    Op::Publish => {
                        arenas.published(takes);
                        for r in regions.iter_mut().filter(|r| r.published.is_none()) {
                            r.published = Some(takes);
                        }
                    }
                    Op::Take => takes += 1,
                }
                for r in regions.iter().filter(|r| r.live(takes)) {
                    // SAFETY: this thread is the only writer, and it is not writing now.
                    let bytes = unsafe { memory[r.arena].bytes(r.offset, r.len) };
                    prop_assert!(bytes.iter().all(|b| *b == r.tag), "region {}+{} in arena {} was overwritten", r.offset, r.len, r.arena);
                }
                regions.retain(|r| r.live(takes));
            }
        }
    }
}
