//! The inline driver: no poller thread. The consumer runs each turn itself
//! when the poll descriptor turns readable or the timeout passes, so there
//! is no thread hop per message, and no parallelism either.

use std::io;
use std::os::fd::RawFd;
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
}

impl InlinePoller {
    /// Makes a watcher whose turns the caller runs, on its own thread, with
    /// [`InlinePoller::turn`] when [`InlinePoller::poll_fd`] turns readable or
    /// [`InlinePoller::timeout`] passes.
    #[must_use = "dropping the driver closes the watcher"]
    pub fn start(options: &Options) -> io::Result<(Exchange, InlinePoller)> {
        // Nobody to notify: the consumer learns what a turn did from its result.
        let (exchange, poller) = assemble(options, || {})?;
        let shared = exchange.shared.clone();
        Ok((exchange, InlinePoller { shared, poller: Some(Box::new(poller)) }))
    }

    /// Runs one turn without waiting. True if the consumer should take:
    /// completions wait, or a starved read needs a take to go on.
    pub fn turn(&mut self) -> bool {
        if let Some(poller) = &mut self.poller {
            poller.turn(Some(Duration::ZERO));
        }
        self.shared.lock().wants_take()
    }

    /// [`InlinePoller::turn`] without asking the kernel for readiness: what
    /// a consumer runs right after submitting, so that writes go out at once.
    pub fn advance(&mut self) -> bool {
        if let Some(poller) = &mut self.poller {
            poller.advance();
        }
        self.shared.lock().wants_take()
    }

    /// Applies one request at once, after anything queued on the exchange;
    /// once closed, it completes with [`crate::Error::WatcherClosed`].
    pub fn apply_now(&mut self, submission: Submission) {
        match &mut self.poller {
            Some(poller) => poller.apply_now(submission),
            None => self.shared.submit([submission]),
        }
    }

    /// Submits a write of `data`, sent at once straight from `data` when
    /// nothing is queued ahead of it on the connection; only what the socket
    /// did not take is copied.
    pub fn write_now(&mut self, req: ReqId, conn: ConnId, data: &[u8], deadline: Option<Instant>) {
        match &mut self.poller {
            Some(poller) => poller.write_now(req, conn, data, deadline),
            None => self.shared.submit([Submission::Write { req, conn, data: data.to_vec(), deadline }]),
        }
    }

    /// The descriptor that turns readable when a turn has work; None once closed.
    pub fn poll_fd(&self) -> Option<RawFd> {
        self.poller.as_ref().map(|poller| poller.poll_fd())
    }

    /// When the next turn is due even without readiness (a deadline, or
    /// connects still waiting to start).
    pub fn timeout(&self) -> Option<Duration> {
        self.poller.as_ref().and_then(|poller| poller.timeout())
    }

    /// Completes everything pending with [`crate::Error::WatcherClosed`] and
    /// closes every socket; the next take returns those completions. Idempotent.
    pub fn close(&mut self) {
        let Some(mut poller) = self.poller.take() else { return };
        self.shared.begin_close();
        // The last turn takes the queued submissions; closing, it does nothing else.
        poller.turn(Some(Duration::ZERO));
        poller.shut_down();
        self.shared.mark_stopped();
    }
}

impl Drop for InlinePoller {
    fn drop(&mut self) {
        self.close();
    }
}
