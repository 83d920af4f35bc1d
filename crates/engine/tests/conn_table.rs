//! Property test of the connection table: ids carry a slot and a generation,
//! and a request on an id whose generation is not the slot's current one must
//! never reach the connection that now holds the slot. Driven through a real
//! inline watcher over Unix socket pairs, against a model of which id is live
//! in each slot.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use gaio_engine::{slot_of, ConnId, Error, Exchange, InlinePoller, Options, ReqId, Submission, SLOT_BITS};
use proptest::prelude::*;

const SLOTS: u32 = 3;

/// Which generation of a slot a request names.
#[derive(Clone, Copy, Debug)]
enum Age {
    Current,
    /// An earlier generation (or generation 0, which is never adopted).
    Older(u32),
    /// One the submitter has not adopted yet.
    Newer,
}

#[derive(Clone, Debug)]
enum Op {
    /// A new generation takes the slot, freed or not.
    Adopt(u32),
    Free(u32, Age),
    Write(u32, Age),
    Read(u32, Age),
}

fn age() -> impl Strategy<Value = Age> {
    prop_oneof![3 => Just(Age::Current), 2 => (1..3u32).prop_map(Age::Older), 1 => Just(Age::Newer)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..SLOTS).prop_map(Op::Adopt),
        1 => (0..SLOTS, age()).prop_map(|(s, a)| Op::Free(s, a)),
        3 => (0..SLOTS, age()).prop_map(|(s, a)| Op::Write(s, a)),
        3 => (0..SLOTS, age()).prop_map(|(s, a)| Op::Read(s, a)),
    ]
}

/// One slot of the model: the latest generation adopted, and the peer of its
/// connection while that is open.
#[derive(Default)]
struct Slot {
    generation: u32,
    peer: Option<UnixStream>,
}

struct Table {
    watcher: Exchange,
    poller: InlinePoller,
    slots: Vec<Slot>,
    next_req: ReqId,
}

/// A completion with its bytes copied out of the batch.
#[derive(Debug, PartialEq, Eq)]
struct Done {
    error: Option<Error>,
    bytes: Vec<u8>,
}

fn id(slot: u32, generation: u32) -> ConnId {
    slot | (generation << SLOT_BITS)
}

/// What is waiting on a non-blocking peer: the bytes, and whether the stream ended.
fn drain(peer: &mut UnixStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (got, false),
            Err(e) => panic!("peer read failed: {e}"),
        }
    }
}

impl Table {
    fn new() -> Table {
        let (watcher, poller) = InlinePoller::start(&Options::default(), || {}).expect("watcher starts");
        Table { watcher, poller, slots: (0..SLOTS).map(|_| Slot::default()).collect(), next_req: 0 }
    }

    fn target(&self, slot: u32, age: Age) -> (ConnId, bool) {
        let s = &self.slots[slot as usize];
        let generation = match age {
            Age::Current => s.generation,
            Age::Older(k) => s.generation.saturating_sub(k),
            Age::Newer => s.generation + 1,
        };
        let conn = id(slot, generation);
        assert_eq!(slot_of(conn), slot as usize);
        (conn, s.peer.is_some() && generation == s.generation)
    }

    /// Submits one request and runs turns until it completes; nothing else may.
    fn request(&mut self, make: impl FnOnce(ReqId) -> Submission) -> Done {
        self.next_req += 1;
        let req = self.next_req;
        self.watcher.submit([make(req)]);
        for _ in 0..200 {
            self.poller.turn();
            let batch = self.watcher.take();
            match &batch.completions[..] {
                [] => {}
                [c] if c.req == req => return Done { error: c.error, bytes: batch.bytes(c).to_vec() },
                other => panic!("request {req} expected, got {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("request {req} did not complete");
    }

    /// Every open peer has nothing waiting and has not seen its stream end.
    fn assert_quiet(&mut self) -> Result<(), TestCaseError> {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(peer) = s.peer.as_mut() {
                let (bytes, ended) = drain(peer);
                prop_assert!(bytes.is_empty() && !ended, "slot {i}: unexpected {bytes:?}, ended {ended}");
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: Op, tag: &[u8]) -> Result<(), TestCaseError> {
        match op {
            Op::Adopt(slot) => {
                let (ours, peer) = UnixStream::pair().expect("socket pair");
                peer.set_nonblocking(true).expect("non-blocking peer");
                let s = &mut self.slots[slot as usize];
                s.generation += 1;
                let conn = id(slot, s.generation);
                let old = s.peer.replace(peer);
                self.watcher.adopt(conn, ours.as_fd()).expect("adopted");
                drop(ours);
                self.poller.turn();
                if let Some(mut old) = old {
                    // Reusing a live slot closes its connection.
                    prop_assert_eq!(drain(&mut old), (Vec::new(), true));
                }
            }
            Op::Free(slot, age) => {
                let (conn, live) = self.target(slot, age);
                self.watcher.submit([Submission::Free { conn }]);
                self.poller.turn();
                if live {
                    let mut peer = self.slots[slot as usize].peer.take().expect("live");
                    prop_assert_eq!(drain(&mut peer), (Vec::new(), true));
                }
            }
            Op::Write(slot, age) => {
                let (conn, live) = self.target(slot, age);
                let done = self.request(|req| Submission::Write { req, conn, data: tag.to_vec(), deadline: None });
                if live {
                    prop_assert_eq!(done.error, None);
                    let peer = self.slots[slot as usize].peer.as_mut().expect("live");
                    prop_assert_eq!(drain(peer), (tag.to_vec(), false));
                } else {
                    prop_assert_eq!(done.error, Some(Error::ConnClosed));
                }
            }
            Op::Read(slot, age) => {
                let (conn, live) = self.target(slot, age);
                let read = |conn| move |req| Submission::Read { req, conn, len: 64, full: false, deadline: None };
                // The slot's open connection has bytes waiting: a stale id must not get them.
                let sent = match self.slots[slot as usize].peer.as_mut() {
                    Some(peer) => peer.write_all(tag).is_ok(),
                    None => false,
                };
                let done = self.request(read(conn));
                let got_tag = Done { error: None, bytes: tag.to_vec() };
                if live {
                    prop_assert_eq!(done, got_tag);
                } else {
                    prop_assert_eq!(done, Done { error: Some(Error::ConnClosed), bytes: Vec::new() });
                    if sent {
                        // Still there for the current generation.
                        let current = id(slot, self.slots[slot as usize].generation);
                        prop_assert_eq!(self.request(read(current)), got_tag);
                    }
                }
            }
        }
        self.assert_quiet()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_stale_id_never_reaches_the_connection_that_reuses_its_slot(ops in prop::collection::vec(op(), 1..60)) {
        let mut table = Table::new();
        for (i, op) in ops.into_iter().enumerate() {
            table.apply(op, format!("op{i}.").as_bytes())?;
        }
    }
}
