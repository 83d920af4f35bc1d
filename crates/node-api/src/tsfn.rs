//! `ThreadsafeFunction`: the one handle other threads may use to reach JS.

use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

use crate::error::guard;
use crate::sys;
use crate::{Env, Error, Result, Value, ValueType};

/// Queues calls of a JS function (`this = undefined`, no arguments) from
/// any thread; Node runs them on the JS thread.
///
/// Dropping it (or [`release`](Self::release)) lets Node close it once the
/// queued calls have run, so the event loop may exit.
#[derive(Debug)]
pub struct ThreadsafeFunction {
    handle: Arc<Mutex<Handle>>,
    /// Ref/unref change the event loop of the thread that created it.
    js_thread: ThreadId,
}

/// The raw handle, or null once released or finalized by Node (the
/// environment shutting down frees it even while threads still hold it).
#[derive(Debug)]
struct Handle(sys::napi_threadsafe_function);

// SAFETY: Node-API allows napi_call/release_threadsafe_function from any
// thread; the mutex orders them against Node's finalizer nulling the handle,
// so no thread uses it after it is freed. (Ref/unref, which Node allows only
// on the loop's own thread, are checked against `js_thread`.)
unsafe impl Send for Handle {}

fn lock(handle: &Mutex<Handle>) -> MutexGuard<'_, Handle> {
    // A panic cannot leave `Handle` half-updated; ignore poisoning.
    handle.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Env {
    /// Wraps `js_callback` for calls from other threads
    /// (`Error::Type("callback must be a function")` if it is none).
    /// `name` identifies it in async hooks and diagnostics.
    pub fn threadsafe_function(self, js_callback: Value, name: &str) -> Result<ThreadsafeFunction> {
        self.expect(js_callback, ValueType::Function, "callback", "function")?;
        let name = self.string(name)?;
        let handle = Arc::new(Mutex::new(Handle(ptr::null_mut())));
        // The finalizer's own reference, so it can null the handle.
        let finalize_data = Arc::into_raw(handle.clone()).cast_mut();
        let status = self.out("napi_create_threadsafe_function", |out| {
            // SAFETY: see `env` module docs. Node keeps `js_callback` alive;
            // `finalized` takes back `finalize_data`.
            unsafe {
                sys::napi_create_threadsafe_function(
                    self.0,
                    js_callback.0,
                    ptr::null_mut(),
                    name.0,
                    0, // unbounded queue, so a non-blocking call never fails with queue_full
                    1, // this handle is the one thread
                    finalize_data.cast(),
                    Some(finalized),
                    ptr::null_mut(),
                    Some(call_js),
                    out,
                )
            }
        });
        match status {
            Ok(raw) => {
                // Node only finalizes on the JS thread, i.e. not before we return.
                lock(&handle).0 = raw;
                Ok(ThreadsafeFunction {
                    handle,
                    js_thread: thread::current().id(),
                })
            }
            Err(e) => {
                // SAFETY: creation failed, so Node will never call `finalized`
                // and this reference is still ours.
                drop(unsafe { Arc::from_raw(finalize_data) });
                Err(e)
            }
        }
    }
}

impl ThreadsafeFunction {
    /// Queues one call (any thread, never blocks). False if the function is
    /// closing (released, or the environment is shutting down) or failed.
    pub fn call(&self) -> bool {
        let handle = lock(&self.handle);
        if handle.0.is_null() {
            return false;
        }
        // SAFETY: non-null under the lock means Node has not freed it.
        let status = unsafe {
            sys::napi_call_threadsafe_function(
                handle.0,
                ptr::null_mut(),
                sys::napi_tsfn_nonblocking,
            )
        };
        status == sys::napi_ok
    }

    /// Whether it keeps the event loop alive. Only on the JS thread that
    /// created it: elsewhere an `Error::Code` with code `ERR_NAPI`.
    pub fn set_ref(&self, env: Env, keep_alive: bool) -> Result<()> {
        if thread::current().id() != self.js_thread {
            return Err(Error::Code {
                code: "ERR_NAPI".into(),
                message: "ThreadsafeFunction::set_ref called off its JS thread".into(),
            });
        }
        let handle = lock(&self.handle);
        if handle.0.is_null() {
            return Ok(()); // already gone: it holds the loop open no more
        }
        // SAFETY: see `env` module docs; non-null under the lock means live.
        let status = unsafe {
            if keep_alive {
                sys::napi_ref_threadsafe_function(env.0, handle.0)
            } else {
                sys::napi_unref_threadsafe_function(env.0, handle.0)
            }
        };
        env.check("napi_ref_threadsafe_function", status)
    }

    /// Same as dropping it; spelled out for readability at call sites.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for ThreadsafeFunction {
    fn drop(&mut self) {
        let mut handle = lock(&self.handle);
        if !handle.0.is_null() {
            // SAFETY: non-null under the lock means live; we then forget it, so
            // this one thread reference is released exactly once.
            unsafe { sys::napi_release_threadsafe_function(handle.0, sys::napi_tsfn_release) };
            handle.0 = ptr::null_mut();
        }
    }
}

/// Runs on the JS thread for each queued call.
unsafe extern "C" fn call_js(
    env: sys::napi_env,
    js_callback: sys::napi_value,
    _context: *mut c_void,
    _data: *mut c_void,
) {
    // Both are null when Node drains the queue during teardown: skip the call.
    if env.is_null() || js_callback.is_null() {
        return;
    }
    let env = Env(env);
    guard("threadsafe function call", || {
        let result = env
            .undefined()
            .and_then(|this| env.call(Value(js_callback), this, &[]));
        if let Err(Error::Pending) = result {
            report_uncaught(env);
        }
    });
}

/// Hands a pending exception to `process.on('uncaughtException')`. Left
/// pending, Node (before API version 10) would only print a DEP0168 warning
/// and drop it, since no JS caller is on the stack to catch it.
pub(crate) fn report_uncaught(env: Env) {
    // SAFETY: see `env` module docs; `out` is a valid out-pointer.
    let exception = env.out("napi_get_and_clear_last_exception", |out| unsafe {
        sys::napi_get_and_clear_last_exception(env.0, out)
    });
    if let Ok(exception) = exception {
        // SAFETY: see `env` module docs; `exception` was just taken from this env.
        unsafe { sys::napi_fatal_exception(env.0, exception) };
    }
}

/// Node's finalizer: the function is being freed (released, or teardown).
unsafe extern "C" fn finalized(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    guard("threadsafe function finalizer", || {
        // SAFETY: `data` is the `Arc` reference leaked for us in `threadsafe_function`.
        let handle = unsafe { Arc::from_raw(data.cast_const().cast::<Mutex<Handle>>()) };
        lock(&handle).0 = ptr::null_mut();
    });
}
