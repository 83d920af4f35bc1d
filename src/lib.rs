//! The addon: glue between the engine (crates/engine) and the TypeScript
//! facade (lib/), over the project's own Node-API layer (crates/node-api).
//!
//! Every function here runs on the JS thread. A watcher is driven one of two
//! ways: by a poller thread of its own, which tells JS a batch is waiting
//! through a threadsafe function (the one thing it touches here); or inline,
//! by Node's event loop watching the engine's poll descriptor, with each
//! turn run on the JS thread and writes attempted during `submit`.
//!
//! `createWatcher` returns an object of methods bound to the watcher's native
//! state, so a call needs no lookup. What crosses is flat: submissions are
//! records the facade writes into memory this side owns, plus an array of
//! the write buffers and connect addresses they point at; completions leave
//! as records written into memory this side owns, which the facade turns into
//! result objects. The record layouts are defined once, in layout.rs, which the facade reads
//! from the addon (lib/native.ts).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gaio_engine::{Address, Completion, Data, Error as EngineError, Exchange, InlinePoller, Options, PollerThread, Submission};
use node_api::{Env, Error, LoopWatch, Method, Result, ThreadsafeFunction, Value, Wake};

mod layout;

use layout::*;

/// What a JS Watcher holds on the native side.
struct NativeWatcher {
    exchange: RefCell<Exchange>,
    driver: Driver,
    /// Bytes of the read-full completions of the latest take, by index.
    owned: RefCell<Vec<Vec<u8>>>,
    /// Where the facade writes submission records.
    submit_records: RefCell<Rc<Records>>,
    /// Where completion records are written for the facade.
    take_records: RefCell<Rc<Records>>,
    /// Unix listeners' socket files by connection id: removed when the
    /// listener is freed or the watcher closes, at once (as Node does), so
    /// the path can be listened on again before the poller gets round to it.
    socket_files: RefCell<HashMap<u32, PathBuf>>,
    /// Makes the poller's next notification panic, for the test of what follows.
    panic_next: Arc<AtomicBool>,
}

/// What runs the poller's turns, and how JS learns that it should take.
enum Driver {
    /// A thread of the poller's own, which calls `ready` (None once released).
    Thread { poller: RefCell<PollerThread>, ready: Arc<Mutex<Option<ThreadsafeFunction>>> },
    /// Node's loop, watching the poll descriptor (`watch`, None once closed)
    /// and running each turn on the JS thread.
    Inline { poller: RefCell<InlinePoller>, watch: RefCell<Option<LoopWatch>> },
}

/// Record memory shared with JS through an external ArrayBuffer. Cells,
/// because JS writes it between our calls while we hold a shared reference.
/// Never resized: JS holds a pointer to it.
struct Records(Vec<Cell<i32>>);

impl Records {
    fn empty() -> Rc<Records> {
        Rc::new(Records(Vec::new()))
    }

    /// `len` zeroed fields; an error, not an abort, if the system cannot give them.
    fn new(len: usize) -> Result<Rc<Records>> {
        let mut fields = Vec::new();
        fields.try_reserve_exact(len).map_err(|_| Error::Code {
            code: "ERR_MEMORY_ALLOCATION_FAILED".into(),
            message: format!("cannot allocate {} bytes of record memory", len * 4),
        })?;
        fields.resize(len, Cell::new(0));
        Ok(Rc::new(Records(fields)))
    }
}

impl Drop for NativeWatcher {
    fn drop(&mut self) {
        self.close();
    }
}

impl NativeWatcher {
    fn new(exchange: Exchange, driver: Driver, panic_next: Arc<AtomicBool>) -> NativeWatcher {
        NativeWatcher {
            exchange: RefCell::new(exchange),
            driver,
            owned: RefCell::default(),
            submit_records: RefCell::new(Records::empty()),
            take_records: RefCell::new(Records::empty()),
            socket_files: RefCell::default(),
            panic_next,
        }
    }

    /// Stops the engine and lets go of the notifier, in the order that keeps
    /// each safe: inline, the loop stops watching the poll descriptor before
    /// it is closed; threaded, the poller thread has stopped before its
    /// threadsafe function goes. Idempotent.
    fn close(&self) {
        match &self.driver {
            Driver::Thread { poller, .. } => poller.borrow_mut().close(),
            Driver::Inline { poller, watch } => {
                drop(watch.borrow_mut().take());
                poller.borrow_mut().close();
            }
        }
        self.release_notifier();
        for (_, path) in self.socket_files.borrow_mut().drain() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Nothing will be notified any more: the event loop may forget the notifier.
    fn release_notifier(&self) {
        match &self.driver {
            Driver::Thread { ready, .. } => drop(ready.lock().unwrap_or_else(|e| e.into_inner()).take()),
            Driver::Inline { watch, .. } => drop(watch.borrow_mut().take()),
        }
    }

    fn forget_socket_file(&self, conn: u32) {
        if let Some(path) = self.socket_files.borrow_mut().remove(&conn) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Inline, after a submit: advance now (writes go out during the call),
    /// then set the timer for the next turn. True if JS should take
    /// (completions wait, or a starved read needs a take).
    fn advance(&self) -> bool {
        let Driver::Inline { poller, watch } = &self.driver else { return false };
        let mut poller = poller.borrow_mut();
        let waiting = poller.advance();
        if let Some(watch) = watch.borrow().as_ref() {
            watch.set_timeout(poller.timeout());
        }
        waiting
    }

    /// The inline poller, if this watcher has one.
    fn inline_poller(&self) -> Option<&RefCell<InlinePoller>> {
        match &self.driver {
            Driver::Inline { poller, .. } => Some(poller),
            Driver::Thread { .. } => None,
        }
    }
}

/// createWatcher(onReady, bufferSize, swapSize, cpu, inline) -> the methods below.
fn create_watcher(env: Env, args: &[Value]) -> Result<Value> {
    // Capped here, before the engine allocates two arenas of swapSize.
    let size = |i: usize, what: &str| match env.to_u32(args[i], what)? as usize {
        n if n > MAX_SWAP_SIZE => Err(Error::Range(format!("{what} must be at most {MAX_SWAP_SIZE} (1 GiB)"))),
        n => Ok(n),
    };
    let options = Options { swap_read_size: size(1, "bufferSize")?, arena_size: size(2, "swapSize")? };
    let cpu = usize::try_from(env.to_i32(args[3], "cpu")?).ok();
    let watcher = match (env.to_bool(args[4], "inline")?, cpu) {
        (true, Some(_)) => return Err(start_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, "cpu pins the poller thread; an inline watcher has none"))),
        (true, None) => inline_watcher(env, args[0], options)?,
        (false, cpu) => threaded_watcher(env, args[0], options, cpu)?,
    };
    let methods: [(&str, Method<NativeWatcher>); 10] = [
        ("records", records),
        ("swapBuffers", swap_buffers),
        ("submit", submit),
        ("take", take),
        ("copyOwned", copy_owned),
        ("keepAlive", keep_alive),
        ("close", close),
        ("listen", listen),
        ("adopt", adopt),
        ("_panicPoller", panic_poller),
    ];
    let object = env.object()?;
    for (name, f) in methods {
        env.set_named(object, name, env.method(name, &watcher, f)?)?;
    }
    Ok(object)
}

fn threaded_watcher(env: Env, on_ready: Value, options: Options, cpu: Option<usize>) -> Result<Rc<NativeWatcher>> {
    let tsfn = env.threadsafe_function(on_ready, "gaio.onReady")?;
    // Nothing outstanding yet: a new watcher must not hold the process open.
    tsfn.set_ref(env, false)?;
    let ready = Arc::new(Mutex::new(Some(tsfn)));
    let notify_ready = ready.clone();
    let panic_next = Arc::new(AtomicBool::new(false));
    let panic_flag = panic_next.clone();
    let notify = move || {
        panic_if_asked(&panic_flag);
        if let Some(tsfn) = notify_ready.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            tsfn.call();
        }
    };
    let (exchange, poller) = PollerThread::start(&options, cpu, notify).map_err(start_error)?;
    Ok(Rc::new(NativeWatcher::new(exchange, Driver::Thread { poller: RefCell::new(poller), ready }, panic_next)))
}

fn inline_watcher(env: Env, on_ready: Value, options: Options) -> Result<Rc<NativeWatcher>> {
    let panic_next = Arc::new(AtomicBool::new(false));
    let panic_flag = panic_next.clone();
    // The turn that calls this also tells JS, by its result.
    let notify = move || panic_if_asked(&panic_flag);
    let (exchange, poller) = InlinePoller::start(&options, notify).map_err(start_error)?;
    let fd = poller.poll_fd().expect("an open inline poller has a poll descriptor");
    let driver = Driver::Inline { poller: RefCell::new(poller), watch: RefCell::new(None) };
    let watcher = Rc::new(NativeWatcher::new(exchange, driver, panic_next));
    // Weak: the watcher owns the watch, and the watch must not keep it alive.
    let weak: Weak<NativeWatcher> = Rc::downgrade(&watcher);
    let on_wake = Box::new(move || {
        let watcher = weak.upgrade();
        let Some(poller) = watcher.as_deref().and_then(NativeWatcher::inline_poller) else { return Wake { call_js: false, timeout: None } };
        let mut poller = poller.borrow_mut();
        Wake { call_js: poller.turn(), timeout: poller.timeout() }
    });
    let watch = env.loop_watch(fd, on_ready, on_wake)?;
    if let Driver::Inline { watch: slot, .. } = &watcher.driver {
        slot.replace(Some(watch));
    }
    Ok(watcher)
}

/// records(submitLen, takeLen) -> [Int32 ArrayBuffer, Int32 ArrayBuffer]:
/// fresh record memory of those lengths (in fields, at most MAX_RECORDS
/// records each), replacing the old. A call that throws replaces nothing:
/// the memory the facade holds stays the memory read and written.
fn records(env: Env, watcher: &NativeWatcher, args: &[Value]) -> Result<Value> {
    let slots = [(&watcher.submit_records, "submitLen", SUBMIT_FIELDS), (&watcher.take_records, "takeLen", TAKE_FIELDS)];
    let mut fresh = Vec::with_capacity(slots.len());
    for (i, &(_, what, fields)) in slots.iter().enumerate() {
        let len = env.to_u32(args[i], what)? as usize;
        if len > MAX_RECORDS * fields {
            return Err(Error::Range(format!("{what} must be at most {} fields ({MAX_RECORDS} records)", MAX_RECORDS * fields)));
        }
        fresh.push(Records::new(len)?);
    }
    let list = env.array(2)?;
    for (i, memory) in fresh.iter().enumerate() {
        let data = memory.0.as_ptr() as *mut u8;
        // SAFETY: the Rc handed over keeps the memory alive as long as the
        // ArrayBuffer; Rust only touches it through Cells, on the JS thread.
        let buffer = unsafe { env.external_arraybuffer(data, memory.0.len() * 4, Box::new(memory.clone()))? };
        env.set_element(list, i as u32, buffer)?;
    }
    for ((slot, ..), memory) in slots.into_iter().zip(fresh) {
        slot.replace(memory);
    }
    Ok(list)
}

/// swapBuffers() -> [ArrayBuffer, ArrayBuffer] over the engine's swap arenas.
fn swap_buffers(env: Env, watcher: &NativeWatcher, _args: &[Value]) -> Result<Value> {
    let exchange = watcher.exchange.borrow();
    let list = env.array(2)?;
    for (i, arena) in exchange.arenas().iter().enumerate() {
        // SAFETY: the Arc handed over keeps the memory alive as long as the
        // ArrayBuffer; JS reads only regions the engine has published and
        // does not refill before the next take (see crates/engine/src/arena.rs).
        let buffer = unsafe { env.external_arraybuffer(arena.as_ptr(), arena.size(), Box::new(arena.clone()))? };
        env.set_element(list, i as u32, buffer)?;
    }
    Ok(list)
}

/// submit(count, extras) -> whether to take now (inline only): one crossing
/// for a batch of requests whose records are in the submission memory.
/// Inline, each is applied at once and a write goes out straight from the
/// caller's buffer (no copy unless the socket cannot take it all); threaded,
/// the batch is queued under one lock with one wake-up.
fn submit(env: Env, watcher: &NativeWatcher, args: &[Value]) -> Result<Value> {
    let count = env.to_u32(args[0], "count")? as usize;
    let extras = args[1];
    // Checked for the whole call: reading elements of a non-array would throw in the middle.
    env.array_length(extras)?;
    let records = watcher.submit_records.borrow().clone();
    let fields = records
        .0
        // Saturating: on a 32-bit target a count near u32::MAX would wrap to a short prefix.
        .get(..count.saturating_mul(SUBMIT_FIELDS))
        .ok_or_else(|| Error::Range("count exceeds the submission records".into()))?;
    let inline = watcher.inline_poller();
    // Read the clock once per batch, and only for a batch with deadlines.
    let mut now = None;
    let mut batch = Vec::new();
    for record in fields.chunks_exact(SUBMIT_FIELDS) {
        let [kind, req, conn, arg, extra, deadline] = std::array::from_fn(|f| record[f].get());
        let (req, conn) = (req as u32, conn as u32);
        let deadline = u64::try_from(deadline).ok().map(|ms| *now.get_or_insert_with(Instant::now) + Duration::from_millis(ms));
        // Writes and connects name an element of `extras`: read once, here.
        let extra = match kind {
            KIND_WRITE | KIND_CONNECT => extra_element(env, extras, extra as u32),
            _ => None,
        };
        if let (KIND_WRITE, Some(poller), Some(data)) = (kind, inline, extra.and_then(|v| write_buffer(env, v))) {
            // No JS runs from here to the write, so the buffer stays put while it is written.
            poller.borrow_mut().write_now(req, conn, data.bytes(), deadline);
            continue;
        }
        // A record that cannot be read fails on its own: the rest of the batch goes ahead.
        let submission = submission_of(env, watcher, extra, [kind, arg], req, conn, deadline)
            .unwrap_or_else(|error| Submission::Reject { req, error });
        match inline {
            Some(poller) => poller.borrow_mut().apply_now(submission),
            None => batch.push(submission),
        }
    }
    watcher.exchange.borrow().submit(batch);
    env.boolean(watcher.advance())
}

/// Element `index` of `extras`, or None if it cannot be read. Reading it may
/// run JS (a getter, which may throw): a record that cannot be read fails on
/// its own, so the exception is taken here, not left pending, where it would
/// fail every later read of the batch and then be thrown from `submit` after
/// the batch was applied anyway.
fn extra_element(env: Env, extras: Value, index: u32) -> Option<Value> {
    match env.element(extras, index) {
        Ok(value) => Some(value),
        Err(Error::Pending) => {
            let _ = env.take_exception();
            None
        }
        Err(_) => None,
    }
}

/// The bytes of a write, if `value` is a TypedArray the completion's i32 size
/// can count (the facade never sends more than a 4 MiB chunk).
fn write_buffer(env: Env, value: Value) -> Option<node_api::TypedArray> {
    env.typed_array(value, "write buffer").ok().filter(|data| i32::try_from(data.bytes().len()).is_ok())
}

/// The engine's form of one submission record; `extra` is the element of
/// `extras` that a write or a connect names, if it could be read.
fn submission_of(
    env: Env,
    watcher: &NativeWatcher,
    extra: Option<Value>,
    [kind, arg]: [i32; 2],
    req: u32,
    conn: u32,
    deadline: Option<Instant>,
) -> std::result::Result<Submission, EngineError> {
    let invalid = EngineError::Os(libc::EINVAL);
    let len = || usize::try_from(arg).map_err(|_| invalid);
    Ok(match kind {
        KIND_READ | KIND_READ_FULL => Submission::Read { req, conn, len: len()?, full: kind == KIND_READ_FULL, deadline },
        KIND_WRITE => {
            let data = extra.and_then(|v| write_buffer(env, v)).ok_or(invalid)?;
            Submission::Write { req, conn, data: data.bytes().to_vec(), deadline }
        }
        KIND_ACCEPT => Submission::Accept { req, listener: arg as u32, conn },
        KIND_CONNECT => {
            let target = extra.ok_or(invalid).and_then(|v| env.to_string(v, "address").map_err(|_| invalid))?;
            Submission::Connect { req, conn, addr: parse_address(&target, arg)?, deadline }
        }
        KIND_CLOSE_WRITE => Submission::CloseWrite { req, conn },
        KIND_FREE => {
            watcher.forget_socket_file(conn);
            Submission::Free { conn }
        }
        _ => return Err(invalid),
    })
}

/// "unix:<path>", or an IP address (IPv6 with an optional scope) with `port`.
fn parse_address(target: &str, port: i32) -> std::result::Result<Address, EngineError> {
    if let Some(path) = target.strip_prefix("unix:") {
        return Ok(Address::Unix(path.into()));
    }
    let port = u16::try_from(port).map_err(|_| EngineError::Os(libc::EINVAL))?;
    Ok(Address::inet(target, port)?)
}

/// take() -> count: the completions since the last take, as records in the
/// completion memory; or -count, taking nothing, when the memory holds too few.
fn take(env: Env, watcher: &NativeWatcher, _args: &[Value]) -> Result<Value> {
    let records = watcher.take_records.borrow().clone();
    let capacity = records.0.len() / TAKE_FIELDS;
    let mut exchange = watcher.exchange.borrow_mut();
    if let Some(failure) = exchange.failure() {
        // Nothing will complete now: pending requests must not hold the process open.
        watcher.release_notifier();
        return Err(Error::Code { code: "ERR_INTERNAL_PANIC".into(), message: format!("gaio poller failed: {failure}") });
    }
    let mut batch = match exchange.take_up_to(capacity) {
        Ok(batch) => batch,
        // The facade grows its records and takes again: sized per batch, not per request outstanding.
        Err(needed) => return env.int32(-i32::try_from(needed).unwrap_or(i32::MAX)),
    };
    let mut owned = watcher.owned.borrow_mut();
    owned.clear();
    let count = batch.completions.len();
    for (completion, out) in batch.completions.drain(..).zip(records.0.chunks_exact(TAKE_FIELDS)) {
        let Completion { req, size, error, data } = completion;
        // The casts cannot wrap: a swap offset is below MAX_SWAP_SIZE (1 GiB);
        // a size is at most a read's length (an i32 field) or a write's bytes
        // (checked in `write_buffer`); an owned index is below the records'
        // capacity (MAX_RECORDS); req is the record's own i32.
        let (place, offset) = match data {
            Data::None => (WHERE_NONE, 0),
            Data::Swap { arena, offset } => (arena as i32, offset as i32),
            Data::Owned(bytes) => {
                owned.push(bytes);
                (WHERE_OWNED, owned.len() as i32 - 1)
            }
            Data::Socket(fd) => (WHERE_SOCKET, fd),
        };
        let record = [req as i32, size as i32, error.map_or(0, error_code), place, offset];
        for (cell, value) in out.iter().zip(record) {
            cell.set(value);
        }
    }
    env.uint32(count as u32)
}

/// copyOwned(index, target): the bytes of a read-full completion into the caller's buffer.
fn copy_owned(env: Env, watcher: &NativeWatcher, args: &[Value]) -> Result<Value> {
    let index = env.to_u32(args[0], "index")? as usize;
    let mut target = env.typed_array(args[1], "target")?;
    let owned = watcher.owned.borrow();
    let bytes = owned.get(index).ok_or_else(|| Error::Range("no such completion bytes".into()))?;
    let target = target.bytes_mut();
    let n = bytes.len().min(target.len());
    target[..n].copy_from_slice(&bytes[..n]);
    env.undefined()
}

/// keepAlive(on): whether pending requests hold the process open.
fn keep_alive(env: Env, watcher: &NativeWatcher, args: &[Value]) -> Result<Value> {
    let on = env.to_bool(args[0], "on")?;
    match &watcher.driver {
        Driver::Thread { ready, .. } => {
            let ready = ready.lock().unwrap_or_else(|e| e.into_inner());
            ready.as_ref().map_or(Ok(()), |tsfn| tsfn.set_ref(env, on))?;
        }
        Driver::Inline { watch, .. } => {
            if let Some(watch) = watch.borrow().as_ref() {
                watch.set_ref(on);
            }
        }
    }
    env.undefined()
}

/// _panicPoller(): the poller panics at its next notification, on its thread
/// or in an inline turn (a test hook).
fn panic_poller(env: Env, watcher: &NativeWatcher, _args: &[Value]) -> Result<Value> {
    watcher.panic_next.store(true, Ordering::Relaxed);
    env.undefined()
}

/// The notifier's side of `_panicPoller`.
fn panic_if_asked(panic_next: &AtomicBool) {
    if panic_next.swap(false, Ordering::Relaxed) {
        panic!("deliberate poller panic for the lifetime test");
    }
}

/// close(): stops the poller; its last completions stay for one more take.
fn close(env: Env, watcher: &NativeWatcher, _args: &[Value]) -> Result<Value> {
    watcher.close();
    env.undefined()
}

/// listen(conn, host, port, path, backlog, reusePort) -> port, or -errno.
fn listen(env: Env, watcher: &NativeWatcher, args: &[Value]) -> Result<Value> {
    let conn = env.to_i32(args[0], "conn")? as u32;
    let host = env.to_string(args[1], "host")?;
    let port = env.to_i32(args[2], "port")?;
    let path = env.to_string(args[3], "path")?;
    let backlog = env.to_u32(args[4], "backlog")?;
    let reuse_port = env.to_bool(args[5], "reusePort")?;
    let address = if path.is_empty() { parse_address(&host, port) } else { Ok(Address::Unix(path.clone().into())) };
    let address = match address {
        Ok(address) => address,
        Err(e) => return env.int32(-error_code(e)),
    };
    match watcher.exchange.borrow().listen(conn, &address, backlog, reuse_port) {
        Ok(port) => {
            if !path.is_empty() {
                watcher.socket_files.borrow_mut().insert(conn, path.into());
            }
            env.int32(i32::from(port))
        }
        Err(e) => env.int32(-e.raw_os_error().unwrap_or(libc::EINVAL)),
    }
}

/// adopt(conn, fd) -> the duplicate's descriptor, or -errno: takes a
/// duplicate of a connected socket.
fn adopt(env: Env, watcher: &NativeWatcher, args: &[Value]) -> Result<Value> {
    let conn = env.to_i32(args[0], "conn")? as u32;
    let fd = descriptor(env, args[1])?;
    match watcher.exchange.borrow().adopt(conn, fd) {
        Ok(raw) => env.int32(raw),
        Err(e) => env.int32(-e.raw_os_error().unwrap_or(libc::EINVAL)),
    }
}

// Calls on a connection's own descriptor, made on the JS thread. The facade
// makes them only while the connection is open (not freed, its watcher not
// closed): until then the descriptor is the connection's, whichever thread
// does its I/O.

/// socketAddresses(fd) -> [localAddress, localPort, remoteAddress, remotePort]:
/// strings and numbers, or undefined where there is none (a Unix socket, a peer gone).
fn socket_addresses(env: Env, args: &[Value]) -> Result<Value> {
    let (local, peer) = gaio_engine::socket_addresses(descriptor(env, args[0])?);
    let list = env.array(4)?;
    for (i, addr) in [local, peer].into_iter().enumerate() {
        if let Some(addr) = addr {
            let ip = match addr {
                SocketAddr::V6(v6) if v6.scope_id() != 0 => format!("{}%{}", v6.ip(), v6.scope_id()),
                _ => addr.ip().to_string(),
            };
            env.set_element(list, 2 * i as u32, env.string(&ip)?)?;
            env.set_element(list, 2 * i as u32 + 1, env.uint32(addr.port().into())?)?;
        }
    }
    Ok(list)
}

/// sendNow(fd, bytes) -> bytes sent (0 if the socket takes none now), or -errno.
fn send_now(env: Env, args: &[Value]) -> Result<Value> {
    let fd = descriptor(env, args[0])?;
    let data = env.typed_array(args[1], "bytes")?;
    match gaio_engine::send(fd, data.bytes()) {
        Ok(n) => env.int32(i32::try_from(n).unwrap_or(i32::MAX)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => env.int32(0),
        Err(e) => env.int32(-e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// setNoDelay(fd, on) -> 0 or -errno.
fn set_no_delay(env: Env, args: &[Value]) -> Result<Value> {
    let fd = descriptor(env, args[0])?;
    errno_result(env, gaio_engine::set_nodelay(fd, env.to_bool(args[1], "on")?))
}

/// setKeepAlive(fd, on, idleSeconds) -> 0 or -errno.
fn set_keep_alive(env: Env, args: &[Value]) -> Result<Value> {
    let fd = descriptor(env, args[0])?;
    errno_result(env, gaio_engine::set_keepalive(fd, env.to_bool(args[1], "on")?, env.to_u32(args[2], "idleSeconds")?))
}

/// A descriptor as the facade passes it: an open connection's (see above),
/// or, to `adopt`, a connected net.Socket's, whose handle is open during the call.
fn descriptor(env: Env, value: Value) -> Result<BorrowedFd<'static>> {
    let fd = env.to_i32(value, "fd")?;
    if fd < 0 {
        return Err(Error::Range("fd must not be negative".into()));
    }
    // SAFETY: not -1 (checked), and open for the call (the facade's contract, above).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

fn errno_result(env: Env, result: std::io::Result<()>) -> Result<Value> {
    env.int32(result.map_or_else(|e| -e.raw_os_error().unwrap_or(libc::EINVAL), |()| 0))
}

fn start_error(e: std::io::Error) -> Error {
    Error::Code { code: "ERR_WATCHER_START".into(), message: format!("cannot start the watcher: {e}") }
}

fn init(env: Env, exports: Value) -> Result<Value> {
    env.set_named(exports, "layout", layout::export(env)?)?;
    let functions: [(&str, node_api::Callback); 5] = [
        ("createWatcher", create_watcher),
        ("sendNow", send_now),
        ("socketAddresses", socket_addresses),
        ("setNoDelay", set_no_delay),
        ("setKeepAlive", set_keep_alive),
    ];
    for (name, f) in functions {
        env.set_named(exports, name, env.function(name, f)?)?;
    }
    let panic: node_api::Callback = |_, _| panic!("deliberate panic for the boundary test");
    env.set_named(exports, "_panic", env.function("_panic", panic)?)?;
    Ok(exports)
}

node_api::register_module!(init);
