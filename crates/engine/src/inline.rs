//! The inline driver: no poller thread. The consumer runs each turn itself
//! when the poll descriptor turns readable or the timeout passes, so there
//! is no thread hop per message, and no parallelism either.

use std::io;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exchange::{Exchange, Shared};
use crate::op::{ConnId, ReqId, Submission};
use crate::poller::Poller;
use crate::watcher::{assemble, Options};

/// A poller run by its consumer's turns. Dropping it closes the watcher.
pub struct InlinePoller {
    shared: Arc<Shared>,
    /// None once closed.
    poller: Option<Box<Poller>>,
    /// A turn panicked: the poller is not run again, and the next take
    /// reports the failure, as a poller thread's panic is reported.
    failed: bool,
}

impl InlinePoller {
    /// Makes a watcher whose turns the caller runs, on its own thread, with
    /// [`InlinePoller::turn`] when [`InlinePoller::poll_fd`] turns readable or
    /// [`InlinePoller::timeout`] passes. `notify` runs inside a turn that
    /// publishes completions; the consumer learns of them from the turn's
    /// result anyway.
    #[must_use = "dropping the driver closes the watcher"]
    pub fn start(options: &Options, notify: impl Fn() + Send + Sync + 'static) -> io::Result<(Exchange, InlinePoller)> {
        let (exchange, poller) = assemble(options, notify)?;
        let shared = exchange.shared.clone();
        Ok((exchange, InlinePoller { shared, poller: Some(Box::new(poller)), failed: false }))
    }

    /// Runs one turn without waiting. True if the consumer should take:
    /// completions wait, a starved read needs a take to go on, or a turn panicked.
    pub fn turn(&mut self) -> bool {
        if !self.run(|poller| poller.turn(Some(Duration::ZERO))) && self.failed {
            // Else the consumer's loop would find the poll descriptor ready on every pass.
            if let Some(poller) = &mut self.poller {
                poller.discard_readiness(Some(Duration::ZERO));
            }
        }
        self.shared.lock().wants_take()
    }

    /// [`InlinePoller::turn`] without asking the kernel for readiness: what
    /// a consumer runs right after submitting, so that writes go out at once.
    pub fn advance(&mut self) -> bool {
        self.run(Poller::advance);
        self.shared.lock().wants_take()
    }

    /// Applies one request at once, after anything queued on the exchange;
    /// once closed (or failed), it completes with [`crate::Error::WatcherClosed`].
    pub fn apply_now(&mut self, submission: Submission) {
        let mut unapplied = Some(submission);
        self.run(|poller| poller.apply_now(unapplied.take().expect("applied once")));
        if let Some(submission) = unapplied {
            self.shared.submit([submission]);
        }
    }

    /// Submits a write of `data`, sent at once straight from `data` when
    /// nothing is queued ahead of it on the connection; only what the socket
    /// did not take is copied.
    pub fn write_now(&mut self, req: ReqId, conn: ConnId, data: &[u8], deadline: Option<Instant>) {
        if !self.run(|poller| poller.write_now(req, conn, data, deadline)) {
            self.shared.submit([Submission::Write { req, conn, data: data.to_vec(), deadline }]);
        }
    }

    /// Runs `step` on the poller unless it is closed or failed (then false).
    /// A panic is caught here: it must not unwind into the consumer's event
    /// loop, and the poller's state after it is not to be trusted.
    fn run<R>(&mut self, step: impl FnOnce(&mut Poller) -> R) -> bool {
        if self.failed {
            return false;
        }
        let Some(poller) = self.poller.as_deref_mut() else { return false };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
            let _ = step(&mut *poller);
        })) {
            self.failed = true;
            // A second panic here would change nothing that the first did not.
            let _ = catch_unwind(AssertUnwindSafe(|| poller.shut_down_sockets()));
            self.shared.record_panic(panic);
        }
        true
    }

    /// The descriptor that turns readable when a turn has work; None once closed.
    pub fn poll_fd(&self) -> Option<RawFd> {
        self.poller.as_ref().map(|poller| poller.poll_fd())
    }

    /// When the next turn is due even without readiness (a deadline, or
    /// connects still waiting to start).
    pub fn timeout(&self) -> Option<Duration> {
        // A failed poller's deadlines never expire: none is due.
        self.poller.as_ref().filter(|_| !self.failed).and_then(|poller| poller.timeout())
    }

    /// Completes everything pending with [`crate::Error::WatcherClosed`] and
    /// closes every socket; the next take returns those completions. Idempotent.
    pub fn close(&mut self) {
        let Some(mut poller) = self.poller.take() else { return };
        self.shared.begin_close();
        // The last turn takes the queued submissions; closing, it does nothing else.
        // A failed poller is not run again: dropping it closes its sockets.
        if !self.failed {
            poller.turn(Some(Duration::ZERO));
            poller.shut_down();
        }
        self.shared.mark_stopped();
    }
}

impl Drop for InlinePoller {
    fn drop(&mut self) {
        self.close();
    }
}
