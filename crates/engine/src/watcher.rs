//! The consumer's handle on a poller, run by a thread of its own or by the
//! consumer's thread.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use mio::{Poll, Waker};

use crate::arena::{ArenaMemory, SwapArenas};
use crate::armed::Armed;
use crate::op::{Completion, ConnId, Data, Error, ReqId, Submission};
use crate::poller::{Poller, Shared, State, WAKER};
use crate::sys;

/// How a watcher is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The most bytes one swap read returns (gaio's swap buffer size).
    pub swap_read_size: usize,
    /// The size of each of the two swap arenas; at least `swap_read_size`.
    pub arena_size: usize,
    /// Pin the poller thread to this CPU (Linux only).
    pub cpu: Option<usize>,
    /// No poller thread: the consumer runs each turn itself with
    /// [`Watcher::turn`] when [`Watcher::poll_fd`] turns readable or
    /// [`Watcher::timeout`] passes. No thread hop per message, no parallelism.
    pub inline: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { swap_read_size: 64 * 1024, arena_size: 1024 * 1024, cpu: None, inline: false }
    }
}

/// One poller thread with its sockets. Submissions go in from any thread
/// that can reach the watcher; completions come out in batches through
/// [`Watcher::take`]. `notify` runs on the poller thread when completions are
/// waiting and no notification has been sent since the last take: at most
/// one per take, so a consumer that is slow to take gets one larger batch.
pub struct Watcher {
    shared: Arc<Shared>,
    arenas: [Arc<ArenaMemory>; 2],
    driver: Driver,
}

/// Who runs the poller's turns; `None` once closed.
enum Driver {
    Thread(Option<JoinHandle<()>>),
    Inline(Option<Box<Poller>>),
}

/// The completions of one take. While it lives no other take can happen, so
/// the swap regions it points at stay intact.
pub struct Batch<'w> {
    pub completions: Vec<Completion>,
    arenas: &'w [Arc<ArenaMemory>; 2],
}

impl Batch<'_> {
    /// The bytes a completed read got.
    pub fn bytes<'a>(&'a self, completion: &'a Completion) -> &'a [u8] {
        match &completion.data {
            // SAFETY: the region was published before this take and is not
            // refilled before the next one, which this borrow prevents.
            Data::Swap { arena, offset } => unsafe { self.arenas[*arena].bytes(*offset, completion.size) },
            Data::Owned(bytes) => bytes,
            Data::None | Data::Socket(_) => &[],
        }
    }
}

impl Watcher {
    pub fn new(options: Options, notify: impl Fn() + Send + Sync + 'static) -> io::Result<Watcher> {
        if options.swap_read_size == 0 || options.arena_size < options.swap_read_size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "need 0 < swap_read_size <= arena_size"));
        }
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            waker: Mutex::new(Some(waker)),
            notify: Box::new(notify),
            takes: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            armed: Armed::new(),
        });
        let swap = SwapArenas::new(options.arena_size);
        let arenas = swap.memory();
        let poller = Poller::new(poll, shared.clone(), swap, options.swap_read_size);
        let driver = if options.inline {
            if options.cpu.is_some() {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "cpu pins the poller thread; an inline watcher has none"));
            }
            Driver::Inline(Some(Box::new(poller)))
        } else {
            Driver::Thread(Some(spawn(poller, options.cpu)?))
        };
        Ok(Watcher { shared, arenas, driver })
    }

    /// Queues requests and wakes the poller once for the lot. After close,
    /// each request completes at once with [`Error::WatcherClosed`].
    pub fn submit(&self, batch: impl IntoIterator<Item = Submission>) {
        let mut state = self.shared.lock();
        if state.stopped {
            let failed = batch.into_iter().filter_map(|s| s.req()).map(|req| Completion::failed(req, Error::WatcherClosed));
            state.completions.extend(failed);
            let notify = state.notify_once();
            drop(state);
            if notify {
                (self.shared.notify)();
            }
            return;
        }
        let mut needs_turn = false;
        for submission in batch {
            needs_turn |= !self.reaches_poller_unwoken(&submission);
            state.submissions.push(submission);
        }
        // One wake-up per queue the poller takes; an inline consumer runs the next turn itself.
        let wake = needs_turn && !state.wake_sent;
        state.wake_sent |= wake;
        drop(state);
        if wake && self.shared.sleeping.load(Ordering::SeqCst) {
            self.shared.wake();
        }
    }

    /// A read without a deadline on an armed socket (see `armed.rs`): the
    /// edge that will wake the poller comes with the bytes it waits for.
    fn reaches_poller_unwoken(&self, submission: &Submission) -> bool {
        matches!(submission, Submission::Read { conn, len, deadline: None, .. } if *len > 0 && self.shared.armed.is_armed(*conn))
    }

    /// Takes every completion published so far. Swap regions delivered by the
    /// previous take may be refilled from now on.
    pub fn take(&mut self) -> Batch<'_> {
        self.take_up_to(usize::MAX).unwrap_or_else(|_| unreachable!("no batch exceeds usize::MAX"))
    }

    /// [`Watcher::take`] for a consumer with room for at most `max`
    /// completions: with more waiting it takes nothing and says how many
    /// there are. (Taking only some would hand out swap regions after the
    /// take that was meant to deliver them.)
    pub fn take_up_to(&mut self, max: usize) -> Result<Batch<'_>, usize> {
        let mut state = self.shared.lock();
        if state.completions.len() > max {
            return Err(state.completions.len());
        }
        let completions = std::mem::take(&mut state.completions);
        state.notified = false;
        self.shared.takes.fetch_add(1, Ordering::Release);
        let wake = std::mem::take(&mut state.starved);
        drop(state);
        if wake {
            self.shared.wake();
        }
        Ok(Batch { completions, arenas: &self.arenas })
    }

    /// The swap arenas, for handing to a consumer that reads them in place.
    pub fn arenas(&self) -> &[Arc<ArenaMemory>; 2] {
        &self.arenas
    }

    /// The poller's panic message, if it died.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failure.clone()
    }

    /// Runs one turn of an inline watcher without waiting (a threaded one
    /// runs its own: this does nothing). True if the consumer should take:
    /// completions wait, or a starved read needs a take to go on.
    pub fn turn(&mut self) -> bool {
        if let Driver::Inline(Some(poller)) = &mut self.driver {
            poller.turn(Some(std::time::Duration::ZERO));
        }
        self.shared.lock().wants_take()
    }

    /// [`Watcher::turn`] without asking the kernel for readiness: what a
    /// consumer runs right after submitting, so that writes go out at once.
    pub fn advance(&mut self) -> bool {
        if let Driver::Inline(Some(poller)) = &mut self.driver {
            poller.advance();
        }
        self.shared.lock().wants_take()
    }

    /// Submits one request now: an inline watcher applies it at once (after
    /// anything queued); a threaded one queues it like [`Watcher::submit`].
    pub fn apply_now(&mut self, submission: Submission) {
        match &mut self.driver {
            Driver::Inline(Some(poller)) => poller.apply_now(submission),
            _ => self.submit([submission]),
        }
    }

    /// Submits a write of `data`. An inline watcher sends it at once, straight
    /// from `data`, when nothing is queued ahead of it on the connection, and
    /// copies only what the socket did not take; a threaded one copies it all
    /// and queues it.
    pub fn write_now(&mut self, req: ReqId, conn: ConnId, data: &[u8], deadline: Option<std::time::Instant>) {
        match &mut self.driver {
            Driver::Inline(Some(poller)) => poller.write_now(req, conn, data, deadline),
            _ => self.submit([Submission::Write { req, conn, data: data.to_vec(), deadline }]),
        }
    }

    /// For an inline watcher, the descriptor that turns readable when a turn has work.
    pub fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.driver {
            Driver::Inline(Some(poller)) => Some(poller.poll_fd()),
            _ => None,
        }
    }

    /// For an inline watcher, when the next turn is due even without readiness
    /// (a deadline, or connects still waiting to start).
    pub fn timeout(&self) -> Option<std::time::Duration> {
        match &self.driver {
            Driver::Inline(Some(poller)) => poller.timeout(),
            _ => None,
        }
    }

    /// Stops the poller after it completes everything pending with
    /// [`Error::WatcherClosed`]; the next take returns those completions.
    /// Idempotent.
    pub fn close(&mut self) {
        self.shared.lock().closing = true;
        match &mut self.driver {
            Driver::Thread(thread) => {
                let Some(thread) = thread.take() else { return };
                self.shared.wake();
                // run_guarded catches panics, so join only fails if the thread was killed.
                let _ = thread.join();
            }
            Driver::Inline(poller) => {
                let Some(mut poller) = poller.take() else { return };
                // The last turn takes the queued submissions; closing, it does nothing else.
                poller.turn(Some(std::time::Duration::ZERO));
                poller.shut_down();
            }
        }
        self.shared.lock().stopped = true;
        self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Starts the poller thread, pinned to `cpu` if asked; fails if pinning fails.
fn spawn(poller: Poller, cpu: Option<usize>) -> io::Result<JoinHandle<()>> {
    let (started_tx, started_rx) = mpsc::channel();
    let thread = std::thread::Builder::new().name("gaio-poller".into()).spawn(move || {
        let pinned = cpu.map_or(Ok(()), sys::pin_current_thread);
        let ok = pinned.is_ok();
        let _ = started_tx.send(pinned);
        if ok {
            poller.run_guarded();
        }
    })?;
    let started = started_rx.recv().unwrap_or_else(|_| Err(io::Error::other("poller thread died at start")));
    if let Err(e) = started {
        let _ = thread.join();
        return Err(e);
    }
    Ok(thread)
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.close();
    }
}
