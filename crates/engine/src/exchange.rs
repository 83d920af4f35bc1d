//! The exchange between the poller and its consumer: the submission queue
//! in, the completion queue out, and the flags that decide who wakes whom.
//!
//! The consumer submits under one lock and wakes the poller only when it may
//! be asleep and something needs a turn; the poller publishes a turn's
//! completions under one lock and notifies the consumer only if it has not
//! been notified since its last take, so a consumer that is slow to take gets
//! one larger batch. Each take may release swap space (see `arena.rs`), so a
//! poller starved of it asks for a take even with nothing to deliver.

use std::any::Any;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token, Waker};

use crate::arena::ArenaMemory;
use crate::armed::Armed;
use crate::op::{slot_of, Address, Adoption, Completion, ConnId, Data, Error, Submission};
use crate::sys;

/// What the poller and the consumer share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Dropped at close, so that a closed watcher holds no descriptor.
    pub poll_access: Mutex<Option<PollAccess>>,
    pub notify: Box<dyn Fn() + Send + Sync>,
    /// How many takes the consumer made; written under `state`'s lock.
    pub takes: AtomicU64,
    /// The poller thread is in (or about to enter) a poll that only the waker
    /// ends early. While it is awake, a submission waits for the end of its
    /// turn instead: no wake-up to write, and none to read. Never set inline.
    pub sleeping: AtomicBool,
    /// Connections whose next read needs no wake-up.
    pub armed: Armed,
}

/// The consumer's ways into the poller's poll.
pub(crate) struct PollAccess {
    pub waker: Waker,
    /// Registers the sockets the consumer hands over, on its own thread.
    pub registry: Registry,
}

#[derive(Default)]
pub(crate) struct State {
    pub submissions: Vec<Submission>,
    pub completions: Vec<Completion>,
    /// A notification went out and no take has happened since.
    pub notified: bool,
    /// The submissions queued since the poller last took them include one
    /// that needs a turn, and its submitter has seen to the wake-up.
    pub wake_sent: bool,
    /// The poller waits for a take to free swap space. That take may have
    /// nothing to deliver, but the consumer is told all the same.
    pub starved: bool,
    pub closing: bool,
    /// The poller has exited; later submissions complete at once.
    pub stopped: bool,
    /// The poller panicked with this message.
    pub failure: Option<String>,
}

impl State {
    /// Whether the consumer has reason to take: completions, a starved read
    /// that only a take can move on, or the poller's failure to hear of.
    pub fn wants_take(&self) -> bool {
        !self.completions.is_empty() || self.starved || self.failure.is_some()
    }

    /// Marks the consumer notified; true if this is the notification to send.
    pub fn notify_once(&mut self) -> bool {
        let notify = !self.notified && self.wants_take();
        self.notified |= notify;
        notify
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a panic of the poller's for the consumer: the watcher stops,
    /// and the next take reports the failure (see [`Exchange::failure`]).
    pub fn record_panic(&self, panic: Box<dyn Any + Send>) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let mut state = self.lock();
        state.failure = Some(message);
        state.stopped = true;
        state.notified = true;
        drop(state);
        // Always: the panic may have cut short the notification that was on its way.
        (self.notify)();
    }

    /// Queues requests and wakes the poller once for the lot. After close,
    /// each request completes at once with [`Error::WatcherClosed`].
    pub fn submit(&self, batch: impl IntoIterator<Item = Submission>) {
        let mut state = self.lock();
        if state.stopped {
            let failed = batch.into_iter().filter_map(|s| s.req()).map(|req| Completion::failed(req, Error::WatcherClosed));
            state.completions.extend(failed);
            let notify = state.notify_once();
            drop(state);
            if notify {
                (self.notify)();
            }
            return;
        }
        self.queue(state, batch);
    }

    /// Registers an adopted socket and queues it for the poller. Here, on the
    /// caller's thread, so that a socket the poll cannot take is the caller's
    /// error at once, not closed unseen by the poller while the caller goes
    /// on using its number; under the lock that `stopped` is set under, so
    /// that no socket is queued for a poller that has gone.
    pub fn hand_over(&self, adoption: Adoption) -> io::Result<()> {
        let state = self.lock();
        {
            let access = self.poll_access();
            let Some(access) = access.as_ref().filter(|_| !state.stopped) else { return Err(closed()) };
            let (fd, token) = (adoption.fd.as_raw_fd(), Token(slot_of(adoption.conn)));
            access.registry.register(&mut SourceFd(&fd), token, Interest::READABLE | Interest::WRITABLE)?;
        }
        // Without the access lock: the queue may take it to wake the poller.
        self.queue(state, [Submission::Adopt(adoption)]);
        Ok(())
    }

    fn queue(&self, mut state: MutexGuard<'_, State>, batch: impl IntoIterator<Item = Submission>) {
        let mut needs_turn = false;
        for submission in batch {
            needs_turn |= !self.reaches_poller_unwoken(&submission);
            state.submissions.push(submission);
        }
        // One wake-up per queue the poller takes; an inline consumer runs the next turn itself.
        let wake = needs_turn && !state.wake_sent;
        state.wake_sent |= wake;
        drop(state);
        if wake && self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// A read without a deadline on an armed socket (see `armed.rs`): the
    /// edge that will wake the poller comes with the bytes it waits for.
    fn reaches_poller_unwoken(&self, submission: &Submission) -> bool {
        matches!(submission, Submission::Read { conn, len, deadline: None, .. } if *len > 0 && self.armed.is_armed(*conn))
    }

    /// The watcher is closing: the poller's next turn is its last.
    pub fn begin_close(&self) {
        self.lock().closing = true;
    }

    /// The poller has shut down: later submissions complete at once, and the
    /// waker's and registry's descriptors go.
    pub fn mark_stopped(&self) {
        self.lock().stopped = true;
        self.poll_access().take();
    }

    /// Wakes the poller out of its poll (nothing once closed).
    pub fn wake(&self) {
        if let Some(access) = self.poll_access().as_ref() {
            let _ = access.waker.wake();
        }
    }

    fn poll_access(&self) -> MutexGuard<'_, Option<PollAccess>> {
        self.poll_access.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The consumer's end of a watcher: submissions in, completions out, from
/// any thread that holds it. Its driver ([`crate::PollerThread`] or
/// [`crate::InlinePoller`]) runs the poller's turns.
pub struct Exchange {
    pub(crate) shared: Arc<Shared>,
    arenas: [Arc<ArenaMemory>; 2],
    /// The last batch's vector, emptied: the next take leaves it for the
    /// poller to fill, so a steady stream of takes allocates nothing.
    spare: Vec<Completion>,
}

/// The completions of one take. While it lives no other take can happen, so
/// the swap regions it points at stay intact.
pub struct Batch<'w> {
    pub completions: Vec<Completion>,
    arenas: &'w [Arc<ArenaMemory>; 2],
    spare: &'w mut Vec<Completion>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.completions.clear();
        std::mem::swap(self.spare, &mut self.completions);
    }
}

impl Batch<'_> {
    /// The bytes a completed read got. Panics if `completion` is not one of
    /// this batch's: an older batch's regions may be refilled by now.
    pub fn bytes<'a>(&'a self, completion: &'a Completion) -> &'a [u8] {
        assert!(self.completions.as_ptr_range().contains(&std::ptr::from_ref(completion)), "the completion is not one of this batch's");
        match &completion.data {
            // SAFETY: the region was published before this take and is not
            // refilled before the next one, which this borrow prevents.
            Data::Swap { arena, offset } => unsafe { self.arenas[*arena].bytes(*offset, completion.size) },
            Data::Owned(bytes) => bytes,
            Data::None | Data::Socket(_) => &[],
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the watcher is closed")
}

impl Exchange {
    pub(crate) fn new(shared: Arc<Shared>, arenas: [Arc<ArenaMemory>; 2]) -> Exchange {
        Exchange { shared, arenas, spare: Vec::new() }
    }

    /// Queues requests and wakes a [`crate::PollerThread`] once for the lot
    /// (an [`crate::InlinePoller`] sees them at its owner's next turn). After
    /// close, each request completes at once with [`Error::WatcherClosed`].
    pub fn submit(&self, batch: impl IntoIterator<Item = Submission>) {
        self.shared.submit(batch);
    }

    /// Listens at `address` as connection `conn`. Binding and registering
    /// happen here, on the caller's thread, so that the caller learns the
    /// port (0 for a Unix socket) or the error at once; the poller then owns
    /// the socket (a Unix socket's file is the caller's to remove once this
    /// succeeds). The socket is submitted at once, ahead of anything the
    /// caller has not submitted yet.
    pub fn listen(&self, conn: ConnId, address: &Address, backlog: u32, reuse_port: bool) -> io::Result<u16> {
        // Not even for a moment may a closed watcher hold the address.
        if self.shared.lock().stopped {
            return Err(closed());
        }
        let fd = sys::listen(address, backlog, reuse_port)?;
        let port = sys::local_port(fd.as_fd());
        self.shared.hand_over(Adoption { conn, fd, listener: true }).inspect_err(|_| sys::unbind(address))?;
        Ok(port)
    }

    /// Takes over a duplicate of the connected socket `fd` (which stays the
    /// caller's) as connection `conn`; returns the duplicate's descriptor,
    /// which is the connection's for as long as `conn` is open.
    pub fn adopt(&self, conn: ConnId, fd: BorrowedFd<'_>) -> io::Result<RawFd> {
        let fd = fd.try_clone_to_owned()?;
        sys::prepare_stream(fd.as_fd())?;
        let raw = fd.as_raw_fd();
        self.shared.hand_over(Adoption { conn, fd, listener: false })?;
        Ok(raw)
    }

    /// Takes every completion published so far. Swap regions delivered by the
    /// previous take may be refilled from now on.
    pub fn take(&mut self) -> Batch<'_> {
        self.take_up_to(usize::MAX).unwrap_or_else(|_| unreachable!("no batch exceeds usize::MAX"))
    }

    /// [`Exchange::take`] for a consumer with room for at most `max`
    /// completions: with more waiting it takes nothing and says how many
    /// there are. (Taking only some would hand out swap regions after the
    /// take that was meant to deliver them.)
    pub fn take_up_to(&mut self, max: usize) -> Result<Batch<'_>, usize> {
        let mut state = self.shared.lock();
        if state.completions.len() > max {
            return Err(state.completions.len());
        }
        let completions = std::mem::replace(&mut state.completions, std::mem::take(&mut self.spare));
        state.notified = false;
        self.shared.takes.fetch_add(1, Ordering::Release);
        let wake = std::mem::take(&mut state.starved);
        drop(state);
        if wake {
            self.shared.wake();
        }
        Ok(Batch { completions, arenas: &self.arenas, spare: &mut self.spare })
    }

    /// The swap arenas, for handing to a consumer that reads them in place.
    pub fn arenas(&self) -> &[Arc<ArenaMemory>; 2] {
        &self.arenas
    }

    /// The poller's panic message, if it died.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failure.clone()
    }
}
