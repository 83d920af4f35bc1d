//! The addon: glue between the engine (crates/engine) and the TypeScript
//! facade (index.ts), over the project's own Node-API layer (crates/node-api).
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
//! result objects. The record layouts are mirrored in index.ts.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gaio_engine::{Address, Completion, Data, Error as EngineError, Options, Submission, Watcher};
use node_api::{Env, Error, LoopWatch, Method, Result, ThreadsafeFunction, Value, Wake};

/// Submission record: [kind, req, conn, arg, extra, deadline ms or -1].
const SUBMIT_FIELDS: usize = 6;
/// Completion record: [req, size, error, where, offset].
const TAKE_FIELDS: usize = 5;
/// `where` values besides the swap arena index.
const WHERE_NONE: i32 = -1;
const WHERE_OWNED: i32 = 2;

const KIND_READ: i32 = 0;
const KIND_READ_FULL: i32 = 1;
const KIND_WRITE: i32 = 2;
const KIND_ACCEPT: i32 = 3;
const KIND_CONNECT: i32 = 4;
const KIND_FREE: i32 = 5;

/// What a JS Watcher holds on the native side.
struct Handle {
    watcher: RefCell<Watcher>,
    notifier: Notifier,
    /// Bytes of the read-full completions of the latest take, by index.
    owned: RefCell<Vec<Vec<u8>>>,
    /// Where the facade writes submission records.
    submit_records: RefCell<Rc<Records>>,
    /// Where completion records are written for the facade.
    take_records: RefCell<Rc<Records>>,
}

/// How JS learns that completions are waiting.
enum Notifier {
    /// The poller thread calls this; None once released.
    Thread(Arc<Mutex<Option<ThreadsafeFunction>>>),
    /// Node's loop watches the engine's poll descriptor; None once closed.
    Inline(RefCell<Option<LoopWatch>>),
}

/// Record memory shared with JS through an external ArrayBuffer. Cells,
/// because JS writes it between our calls while we hold a shared reference.
struct Records(Box<[Cell<i32>]>);

impl Records {
    fn new(len: usize) -> Rc<Records> {
        Rc::new(Records((0..len).map(|_| Cell::new(0)).collect()))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // No loop callback may reach the engine while it goes. (The threaded
        // notifier goes after it anyway: fields drop in order, so the poller
        // thread stops before its threadsafe function is released.)
        if let Notifier::Inline(watch) = &self.notifier {
            watch.borrow_mut().take();
        }
    }
}

impl Handle {
    fn new(watcher: Watcher, notifier: Notifier) -> Handle {
        Handle {
            watcher: RefCell::new(watcher),
            notifier,
            owned: RefCell::default(),
            submit_records: RefCell::new(Records::new(0)),
            take_records: RefCell::new(Records::new(0)),
        }
    }

    /// Inline, after a submit: advance now (writes go out during the call),
    /// then set the timer for the next turn. True if completions are waiting.
    fn advance(&self) -> bool {
        let Notifier::Inline(watch) = &self.notifier else { return false };
        let mut watcher = self.watcher.borrow_mut();
        let waiting = watcher.advance();
        if let Some(watch) = watch.borrow().as_ref() {
            watch.set_timeout(watcher.timeout());
        }
        waiting
    }
}

/// createWatcher(onReady, bufferSize, swapSize, cpu, inline) -> the methods below.
fn create_watcher(env: Env, args: &[Value]) -> Result<Value> {
    let options = Options {
        swap_read_size: env.to_u32(args[1], "bufferSize")? as usize,
        arena_size: env.to_u32(args[2], "swapSize")? as usize,
        cpu: usize::try_from(env.to_i32(args[3], "cpu")?).ok(),
        inline: env.to_bool(args[4], "inline")?,
    };
    let handle = if options.inline { inline_handle(env, args[0], options)? } else { threaded_handle(env, args[0], options)? };
    let methods: [(&str, Method<Handle>); 9] = [
        ("records", records),
        ("swapBuffers", swap_buffers),
        ("submit", submit),
        ("take", take),
        ("copyOwned", copy_owned),
        ("keepAlive", keep_alive),
        ("close", close),
        ("listen", listen),
        ("adopt", adopt),
    ];
    let object = env.object()?;
    for (name, f) in methods {
        env.set_named(object, name, env.method(name, &handle, f)?)?;
    }
    Ok(object)
}

fn threaded_handle(env: Env, on_ready: Value, options: Options) -> Result<Rc<Handle>> {
    let tsfn = env.threadsafe_function(on_ready, "gaio.onReady")?;
    // Nothing outstanding yet: a new watcher must not hold the process open.
    tsfn.set_ref(env, false)?;
    let ready = Arc::new(Mutex::new(Some(tsfn)));
    let notify_ready = ready.clone();
    let notify = move || {
        if let Some(tsfn) = notify_ready.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            tsfn.call();
        }
    };
    let watcher = Watcher::new(options, notify).map_err(start_error)?;
    Ok(Rc::new(Handle::new(watcher, Notifier::Thread(ready))))
}

fn inline_handle(env: Env, on_ready: Value, options: Options) -> Result<Rc<Handle>> {
    let watcher = Watcher::new(options, || {}).map_err(start_error)?;
    let fd = watcher.poll_fd().expect("an inline watcher has a poll descriptor");
    let handle = Rc::new(Handle::new(watcher, Notifier::Inline(RefCell::new(None))));
    // Weak: the handle owns the watch, and the watch must not keep it alive.
    let weak: Weak<Handle> = Rc::downgrade(&handle);
    let on_wake = Box::new(move || {
        let Some(handle) = weak.upgrade() else { return Wake { call_js: false, timeout: None } };
        let mut watcher = handle.watcher.borrow_mut();
        Wake { call_js: watcher.turn(), timeout: watcher.timeout() }
    });
    let watch = env.loop_watch(fd, on_ready, on_wake)?;
    if let Notifier::Inline(slot) = &handle.notifier {
        slot.replace(Some(watch));
    }
    Ok(handle)
}

/// records(submitLen, takeLen) -> [Int32 ArrayBuffer, Int32 ArrayBuffer]:
/// fresh record memory of those lengths (in fields), replacing the old.
fn records(env: Env, handle: &Handle, args: &[Value]) -> Result<Value> {
    let list = env.array(2)?;
    for (i, (slot, what)) in [(&handle.submit_records, "submitLen"), (&handle.take_records, "takeLen")].into_iter().enumerate() {
        let len = env.to_u32(args[i], what)? as usize;
        let memory = Records::new(len);
        let data = memory.0.as_ptr() as *mut u8;
        // SAFETY: the Rc handed over keeps the memory alive as long as the
        // ArrayBuffer; Rust only touches it through Cells, on the JS thread.
        let buffer = unsafe { env.external_arraybuffer(data, len * 4, Box::new(memory.clone()))? };
        slot.replace(memory);
        env.set_element(list, i as u32, buffer)?;
    }
    Ok(list)
}

/// swapBuffers() -> [ArrayBuffer, ArrayBuffer] over the engine's swap arenas.
fn swap_buffers(env: Env, handle: &Handle, _args: &[Value]) -> Result<Value> {
    let watcher = handle.watcher.borrow();
    let list = env.array(2)?;
    for (i, arena) in watcher.arenas().iter().enumerate() {
        // SAFETY: the Arc handed over keeps the memory alive as long as the
        // ArrayBuffer; JS reads only regions the engine has published and
        // does not refill before the next take (see crates/engine/src/arena.rs).
        let buffer = unsafe { env.external_arraybuffer(arena.as_ptr(), arena.size(), Box::new(arena.clone()))? };
        env.set_element(list, i as u32, buffer)?;
    }
    Ok(list)
}

/// submit(count, extras) -> completions waiting (inline only): one crossing
/// for a batch of requests whose records are in the submission memory.
/// Inline, each is applied at once and a write goes out straight from the
/// caller's buffer (no copy unless the socket cannot take it all); threaded,
/// the batch is queued under one lock with one wake-up.
fn submit(env: Env, handle: &Handle, args: &[Value]) -> Result<Value> {
    let count = env.to_u32(args[0], "count")? as usize;
    let extras = args[1];
    let records = handle.submit_records.borrow().clone();
    let fields = records
        .0
        .get(..count * SUBMIT_FIELDS)
        .ok_or_else(|| Error::Range("count exceeds the submission records".into()))?;
    let inline = matches!(handle.notifier, Notifier::Inline(_));
    // Read the clock once per batch, and only for a batch with deadlines.
    let mut now = None;
    let mut batch = Vec::new();
    for record in fields.chunks_exact(SUBMIT_FIELDS) {
        let [kind, req, conn, arg, extra, deadline] = std::array::from_fn(|f| record[f].get());
        let (req, conn) = (req as u32, conn as u32);
        let deadline = u64::try_from(deadline).ok().map(|ms| *now.get_or_insert_with(Instant::now) + Duration::from_millis(ms));
        let len = || usize::try_from(arg).map_err(|_| Error::Range("length must not be negative".into()));
        let submission = match kind {
            KIND_READ | KIND_READ_FULL => Submission::Read { req, conn, len: len()?, full: kind == KIND_READ_FULL, deadline },
            KIND_WRITE => {
                let data = env.typed_array(env.element(extras, extra as u32)?, "write buffer")?;
                if inline {
                    // No JS runs during this call, so the buffer stays put while it is written.
                    handle.watcher.borrow_mut().write_now(req, conn, data.bytes(), deadline);
                    continue;
                }
                Submission::Write { req, conn, data: data.bytes().to_vec(), deadline }
            }
            KIND_ACCEPT => Submission::Accept { req, listener: arg as u32, conn },
            KIND_CONNECT => {
                let target = env.to_string(env.element(extras, extra as u32)?, "address")?;
                Submission::Connect { req, conn, addr: parse_address(&target, arg)? }
            }
            KIND_FREE => Submission::Free { conn },
            _ => return Err(Error::Range(format!("unknown submission kind {kind}"))),
        };
        if inline {
            handle.watcher.borrow_mut().apply_now(submission);
        } else {
            batch.push(submission);
        }
    }
    handle.watcher.borrow().submit(batch);
    env.boolean(handle.advance())
}

/// "unix:<path>" or an IP address with `port`.
fn parse_address(target: &str, port: i32) -> Result<Address> {
    if let Some(path) = target.strip_prefix("unix:") {
        return Ok(Address::Unix(path.into()));
    }
    let ip: IpAddr = target.parse().map_err(|_| Error::Type(format!("{target} is not an IP address")))?;
    let port = u16::try_from(port).map_err(|_| Error::Range("port must be from 0 to 65535".into()))?;
    Ok(Address::Inet(SocketAddr::new(ip, port)))
}

fn error_code(error: EngineError) -> i32 {
    match error {
        EngineError::Eof => -1,
        EngineError::Deadline => -2,
        EngineError::ConnClosed => -3,
        EngineError::WatcherClosed => -4,
        EngineError::WrongKind => -5,
        EngineError::EmptyBuffer => -6,
        EngineError::Os(errno) => errno,
    }
}

/// take() -> count: the completions since the last take, as records in the
/// completion memory.
fn take(env: Env, handle: &Handle, _args: &[Value]) -> Result<Value> {
    let records = handle.take_records.borrow().clone();
    let capacity = records.0.len() / TAKE_FIELDS;
    let mut watcher = handle.watcher.borrow_mut();
    if let Some(failure) = watcher.failure() {
        return Err(Error::Code { code: "ERR_INTERNAL_PANIC".into(), message: format!("gaio poller failed: {failure}") });
    }
    let batch = watcher
        .take_up_to(capacity)
        .map_err(|needed| Error::Range(format!("records hold {capacity} completions, {needed} are waiting")))?;
    let mut owned = handle.owned.borrow_mut();
    owned.clear();
    let count = batch.completions.len();
    for (completion, out) in batch.completions.into_iter().zip(records.0.chunks_exact(TAKE_FIELDS)) {
        let Completion { req, size, error, data } = completion;
        let (place, offset) = match data {
            Data::None => (WHERE_NONE, 0),
            Data::Swap { arena, offset } => (arena as i32, offset as i32),
            Data::Owned(bytes) => {
                owned.push(bytes);
                (WHERE_OWNED, owned.len() as i32 - 1)
            }
        };
        let record = [req as i32, size as i32, error.map_or(0, error_code), place, offset];
        for (cell, value) in out.iter().zip(record) {
            cell.set(value);
        }
    }
    env.uint32(count as u32)
}

/// copyOwned(index, target): the bytes of a read-full completion into the caller's buffer.
fn copy_owned(env: Env, handle: &Handle, args: &[Value]) -> Result<Value> {
    let index = env.to_u32(args[0], "index")? as usize;
    let mut target = env.typed_array(args[1], "target")?;
    let owned = handle.owned.borrow();
    let bytes = owned.get(index).ok_or_else(|| Error::Range("no such completion bytes".into()))?;
    let target = target.bytes_mut();
    let n = bytes.len().min(target.len());
    target[..n].copy_from_slice(&bytes[..n]);
    env.undefined()
}

/// keepAlive(on): whether pending requests hold the process open.
fn keep_alive(env: Env, handle: &Handle, args: &[Value]) -> Result<Value> {
    let on = env.to_bool(args[0], "on")?;
    match &handle.notifier {
        Notifier::Thread(ready) => {
            let ready = ready.lock().unwrap_or_else(|e| e.into_inner());
            ready.as_ref().map_or(Ok(()), |tsfn| tsfn.set_ref(env, on))?;
        }
        Notifier::Inline(watch) => {
            if let Some(watch) = watch.borrow().as_ref() {
                watch.set_ref(on);
            }
        }
    }
    env.undefined()
}

/// close(): stops the poller; its last completions stay for one more take.
fn close(env: Env, handle: &Handle, _args: &[Value]) -> Result<Value> {
    handle.watcher.borrow_mut().close();
    // Releasing lets the event loop forget the notifier.
    match &handle.notifier {
        Notifier::Thread(ready) => drop(ready.lock().unwrap_or_else(|e| e.into_inner()).take()),
        Notifier::Inline(watch) => drop(watch.borrow_mut().take()),
    }
    env.undefined()
}

/// listen(conn, host, port, path, backlog, reusePort) -> port, or -errno.
fn listen(env: Env, handle: &Handle, args: &[Value]) -> Result<Value> {
    let conn = env.to_i32(args[0], "conn")? as u32;
    let host = env.to_string(args[1], "host")?;
    let port = env.to_i32(args[2], "port")?;
    let path = env.to_string(args[3], "path")?;
    let backlog = env.to_u32(args[4], "backlog")?;
    let reuse_port = env.to_bool(args[5], "reusePort")?;
    let address = if path.is_empty() { parse_address(&host, port)? } else { Address::Unix(path.clone().into()) };
    let bound = gaio_engine::listen(&address, backlog, reuse_port)
        .and_then(|fd| gaio_engine::local_port(fd.as_fd()).map(|port| (fd, port)));
    match bound {
        Ok((fd, port)) => {
            let path = (!path.is_empty()).then(|| path.into());
            handle.watcher.borrow().submit([Submission::AdoptListener { conn, fd, path }]);
            env.int32(i32::from(port))
        }
        Err(e) => env.int32(-e.raw_os_error().unwrap_or(libc::EINVAL)),
    }
}

/// adopt(conn, fd) -> 0 or -errno: takes a duplicate of a connected socket.
fn adopt(env: Env, handle: &Handle, args: &[Value]) -> Result<Value> {
    let conn = env.to_i32(args[0], "conn")? as u32;
    let fd = env.to_i32(args[1], "fd")?;
    match gaio_engine::dup(fd) {
        Ok(fd) => {
            handle.watcher.borrow().submit([Submission::AdoptStream { conn, fd }]);
            env.int32(0)
        }
        Err(e) => env.int32(-e.raw_os_error().unwrap_or(libc::EINVAL)),
    }
}

fn start_error(e: std::io::Error) -> Error {
    Error::Code { code: "ERR_WATCHER_START".into(), message: format!("cannot start the watcher: {e}") }
}

fn init(env: Env, exports: Value) -> Result<Value> {
    env.set_named(exports, "createWatcher", env.function("createWatcher", create_watcher)?)?;
    let panic: node_api::Callback = |_, _| panic!("deliberate panic for the boundary test");
    env.set_named(exports, "_panic", env.function("_panic", panic)?)?;
    Ok(exports)
}

node_api::register_module!(init);
