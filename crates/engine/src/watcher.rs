//! A watcher: an [`Exchange`] for its consumer, and a poller behind it that
//! either a thread of its own runs ([`crate::PollerThread`]) or the
//! consumer's own turns do ([`crate::InlinePoller`]).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use mio::{Poll, Waker};

use crate::arena::SwapArenas;
use crate::armed::Armed;
use crate::exchange::{Exchange, PollAccess, Shared, State};
use crate::poller::{Poller, WAKER};

/// How a watcher is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The most bytes one swap read returns (gaio's swap buffer size).
    pub swap_read_size: usize,
    /// The size of each of the two swap arenas; at least `swap_read_size`.
    pub arena_size: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { swap_read_size: 64 * 1024, arena_size: 1024 * 1024 }
    }
}

/// The exchange and the poller of a new watcher, for a driver to run.
/// `notify` runs when the consumer has reason to take (see [`crate::PollerThread::start`]).
pub(crate) fn assemble(options: &Options, notify: impl Fn() + Send + Sync + 'static) -> io::Result<(Exchange, Poller)> {
    if options.swap_read_size == 0 || options.arena_size < options.swap_read_size {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "need 0 < swap_read_size <= arena_size"));
    }
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        poll_access: Mutex::new(Some(PollAccess { waker, registry: poll.registry().try_clone()? })),
        notify: Box::new(notify),
        takes: AtomicU64::new(0),
        sleeping: AtomicBool::new(false),
        armed: Armed::new(),
    });
    let swap = SwapArenas::new(options.arena_size)?;
    let exchange = Exchange::new(shared.clone(), swap.memory());
    Ok((exchange, Poller::new(poll, shared, swap, options.swap_read_size)))
}
