//! The threaded driver: the poller runs on a thread of its own, and the
//! consumer hears of completions through `notify`.

use std::io;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::exchange::{Exchange, Shared};
use crate::poller::Poller;
use crate::sys;
use crate::watcher::{assemble, Options};

/// The poller's thread. Dropping it closes the watcher.
pub struct PollerThread {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl PollerThread {
    /// Starts a watcher whose poller runs on a new thread, pinned to `cpu`
    /// if asked (Linux only; failing if pinning fails). `notify` runs when
    /// the consumer has reason to take and has not been told since its last
    /// take (at most once per take): on that thread, or, once the watcher is
    /// closed, on the thread whose submission completed at once.
    #[must_use = "dropping the driver closes the watcher"]
    pub fn start(options: &Options, cpu: Option<usize>, notify: impl Fn() + Send + Sync + 'static) -> io::Result<(Exchange, PollerThread)> {
        let (exchange, poller) = assemble(options, notify)?;
        let shared = exchange.shared.clone();
        Ok((exchange, PollerThread { shared, thread: Some(spawn(poller, cpu)?) }))
    }

    /// Stops the poller after it completes everything pending with
    /// [`crate::Error::WatcherClosed`]; the next take returns those
    /// completions. Idempotent.
    pub fn close(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.shared.begin_close();
        self.shared.wake();
        // run_guarded catches panics, so join only fails if the thread was killed.
        let _ = thread.join();
        self.shared.mark_stopped();
    }
}

impl Drop for PollerThread {
    fn drop(&mut self) {
        self.close();
    }
}

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
