//! `LoopWatch`: a descriptor and a timer on the JS thread's own event loop.
//!
//! For native code that does its I/O on the JS thread instead of a thread of
//! its own: Node's libuv loop watches `fd` for readability and runs one
//! timer. When either fires, `on_wake` runs (Rust only), and if it asks, the
//! JS callback is called inside a handle scope and an async callback scope,
//! so that microtasks run after it as after any other I/O callback.
//!
//! The libuv handles are closed when the `LoopWatch` is dropped or the
//! environment is torn down, whichever comes first; the shared state is freed
//! when both the `LoopWatch` and the handles are gone. Closing is asynchronous
//! (libuv calls back later, into this library), so the watch holds an async
//! cleanup hook until the last close callback: a worker that ends waits for
//! it before unloading the addon, instead of jumping into unmapped code.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::c_void;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::time::Duration;

use crate::error::guard;
use crate::sys;
use crate::tsfn::report_uncaught;
use crate::{Env, Error, Result, Value, ValueType};

/// What `on_wake` wants next.
pub struct Wake {
    /// Call the JS callback now.
    pub call_js: bool,
    /// Run `on_wake` again after this long even without readiness.
    pub timeout: Option<Duration>,
}

/// A watched descriptor and timer; JS thread only (it is `!Send`).
pub struct LoopWatch {
    inner: NonNull<Inner>,
}

struct Inner {
    env: sys::napi_env,
    poll: sys::uv_handle_t,
    timer: sys::uv_handle_t,
    callback: sys::napi_ref,
    context: sys::napi_async_context,
    on_wake: Box<dyn FnMut() -> Wake>,
    /// The `LoopWatch` plus each libuv handle not yet closed: the last one frees.
    owners: u32,
    /// Initialized libuv handles whose close callback has not run yet.
    open_handles: u32,
    /// Held until `open_handles` reaches zero after `close`; null once removed.
    cleanup_hook: sys::napi_async_cleanup_hook_handle,
    closed: bool,
}

impl Env {
    /// Watches `fd` for readability on this thread's event loop. The watch
    /// starts unreferenced: it keeps the process alive only after
    /// [`LoopWatch::set_ref`]`(true)`.
    pub fn loop_watch(self, fd: RawFd, js_callback: Value, on_wake: Box<dyn FnMut() -> Wake>) -> Result<LoopWatch> {
        self.expect(js_callback, ValueType::Function, "callback", "function")?;
        // SAFETY: see `env` module docs; `out` is a valid out-pointer.
        let uv_loop = self.out("napi_get_uv_event_loop", |out| unsafe { sys::napi_get_uv_event_loop(self.0, out) })?;
        let name = self.string("gaio.inline")?;
        // SAFETY: as above; a null resource makes Node create an empty one.
        let context =
            self.out("napi_async_init", |out| unsafe { sys::napi_async_init(self.0, ptr::null_mut(), name.0, out) })?;
        // SAFETY: as above.
        let callback =
            self.out("napi_create_reference", |out| unsafe { sys::napi_create_reference(self.0, js_callback.0, 1, out) })?;
        let inner = Box::into_raw(Box::new(Inner {
            env: self.0,
            poll: new_handle(sys::UV_POLL),
            timer: new_handle(sys::UV_TIMER),
            callback,
            context,
            on_wake,
            owners: 1,
            open_handles: 0,
            cleanup_hook: ptr::null_mut(),
            closed: false,
        }));
        let watch = LoopWatch { inner: NonNull::new(inner).expect("Box is never null") };
        // SAFETY: both handles are fresh memory of the size libuv asked for;
        // `inner` outlives them (it is freed only after their close callbacks).
        let started = unsafe {
            let timer_rc = sys::uv_timer_init(uv_loop, (*inner).timer);
            if timer_rc == 0 {
                (*inner).owners += 1;
                (*inner).open_handles += 1;
                sys::uv_handle_set_data((*inner).timer, inner.cast());
                sys::uv_unref((*inner).timer);
            }
            let poll_rc = sys::uv_poll_init(uv_loop, (*inner).poll, fd);
            if poll_rc == 0 {
                (*inner).owners += 1;
                (*inner).open_handles += 1;
                sys::uv_handle_set_data((*inner).poll, inner.cast());
                sys::uv_unref((*inner).poll);
            }
            if timer_rc != 0 || poll_rc != 0 {
                timer_rc.min(poll_rc)
            } else {
                sys::uv_poll_start((*inner).poll, sys::UV_READABLE, on_poll)
            }
        };
        if started != 0 {
            drop(watch); // closes whatever was initialized
            return Err(Error::Code { code: "ERR_UV".into(), message: format!("libuv could not watch fd {fd}: error {started}") });
        }
        let hook = self.add_async_cleanup_hook(teardown, inner.cast())?;
        // SAFETY: `inner` is alive (the watch owns it); JS thread.
        unsafe { (*inner).cleanup_hook = hook };
        Ok(watch)
    }
}

fn new_handle(kind: i32) -> sys::uv_handle_t {
    // SAFETY: uv_handle_size only reads a table.
    let layout = Layout::from_size_align(unsafe { sys::uv_handle_size(kind) }, 16).expect("small handle size");
    // SAFETY: the layout has a non-zero size. Zeroed, so an uninitialized
    // handle reads as having no data (see `close`).
    let memory = unsafe { alloc_zeroed(layout) };
    assert!(!memory.is_null(), "out of memory for a libuv handle");
    memory.cast()
}

fn free_handle(handle: sys::uv_handle_t, kind: i32) {
    // SAFETY: allocated by `new_handle` with this very layout.
    unsafe {
        let layout = Layout::from_size_align(sys::uv_handle_size(kind), 16).expect("small handle size");
        dealloc(handle.cast(), layout);
    }
}

impl LoopWatch {
    /// Runs `on_wake` again after `timeout` (None: only on readiness).
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        // SAFETY: the LoopWatch is an owner, so `inner` is alive; JS thread only.
        unsafe { arm(self.inner.as_ptr(), timeout) }
    }

    /// Whether the watch keeps the event loop (and so the process) alive.
    pub fn set_ref(&self, keep_alive: bool) {
        let inner = self.inner.as_ptr();
        // SAFETY: as in `set_timeout`; closed handles are not touched.
        unsafe {
            if !(*inner).closed {
                if keep_alive {
                    sys::uv_ref((*inner).poll)
                } else {
                    sys::uv_unref((*inner).poll)
                }
            }
        }
    }
}

impl Drop for LoopWatch {
    fn drop(&mut self) {
        let inner = self.inner.as_ptr();
        // SAFETY: as in `set_timeout`; this gives up the LoopWatch's ownership.
        unsafe {
            if !(*inner).closed {
                close(inner);
            }
            release(inner);
        }
    }
}

/// Starts or stops the timer.
///
/// # Safety
/// `inner` is alive, on the JS thread.
unsafe fn arm(inner: *mut Inner, timeout: Option<Duration>) {
    if (*inner).closed {
        return;
    }
    match timeout {
        None => {
            sys::uv_timer_stop((*inner).timer);
        }
        Some(after) => {
            // libuv counts whole milliseconds; round up so nothing fires early.
            let ms = after.as_nanos().div_ceil(1_000_000).min(u64::MAX as u128) as u64;
            sys::uv_timer_start((*inner).timer, on_timer, ms, 0);
        }
    }
}

/// Stops everything and lets go of JS: the handles close asynchronously.
///
/// # Safety
/// `inner` is alive and not yet closed, on the JS thread with its env live.
unsafe fn close(inner: *mut Inner) {
    (*inner).closed = true;
    sys::napi_delete_reference((*inner).env, (*inner).callback);
    sys::napi_async_destroy((*inner).env, (*inner).context);
    for handle in [(*inner).poll, (*inner).timer] {
        // Only initialized handles have their data set (and an ownership).
        if !sys::uv_handle_get_data(handle).is_null() {
            sys::uv_close(handle, Some(on_closed));
        }
    }
    if (*inner).open_handles == 0 {
        cleanup_done(inner);
    }
}

/// Tells Node that nothing of this watch will call into the library again.
///
/// # Safety
/// `inner` is alive and closed, its handles' close callbacks all run.
unsafe fn cleanup_done(inner: *mut Inner) {
    let hook = std::mem::replace(&mut (*inner).cleanup_hook, ptr::null_mut());
    if !hook.is_null() {
        sys::napi_remove_async_cleanup_hook(hook);
    }
}

/// Drops one ownership; the last owner frees the handles' memory and `inner`.
///
/// # Safety
/// `inner` is alive; the caller held one ownership.
unsafe fn release(inner: *mut Inner) {
    (*inner).owners -= 1;
    if (*inner).owners == 0 {
        free_handle((*inner).poll, sys::UV_POLL);
        free_handle((*inner).timer, sys::UV_TIMER);
        drop(Box::from_raw(inner));
    }
}

unsafe extern "C" fn on_closed(handle: sys::uv_handle_t) {
    // SAFETY: the data of an initialized handle is its live `Inner`, closed;
    // the hook is removed before the release that may free it.
    guard("libuv close callback", || unsafe {
        let inner: *mut Inner = sys::uv_handle_get_data(handle).cast();
        (*inner).open_handles -= 1;
        if (*inner).open_handles == 0 {
            cleanup_done(inner);
        }
        release(inner)
    });
}

unsafe extern "C" fn teardown(_hook: sys::napi_async_cleanup_hook_handle, arg: *mut c_void) {
    // SAFETY: registered with the live `Inner`, which stays alive until the
    // hook is removed (in `cleanup_done`, after its handles have closed).
    guard("event loop cleanup hook", || unsafe {
        let inner: *mut Inner = arg.cast();
        if !(*inner).closed {
            close(inner)
        }
    });
}

unsafe extern "C" fn on_poll(handle: sys::uv_handle_t, _status: i32, _events: i32) {
    // SAFETY: libuv calls back on the JS thread with a handle we initialized.
    unsafe { wake(handle) }
}

unsafe extern "C" fn on_timer(handle: sys::uv_handle_t) {
    // SAFETY: as in `on_poll`.
    unsafe { wake(handle) }
}

/// Runs `on_wake`, re-arms the timer, and calls JS if asked.
///
/// # Safety
/// `handle`'s data is its live `Inner`; on the JS thread, from the event loop.
unsafe fn wake(handle: sys::uv_handle_t) {
    let inner: *mut Inner = sys::uv_handle_get_data(handle).cast();
    guard("event loop callback", || {
        // SAFETY: as above. No reference into `inner` lives across the JS
        // call, which may close the watch.
        unsafe {
            if (*inner).closed {
                return;
            }
            let next = ((*inner).on_wake)();
            arm(inner, next.timeout);
            if next.call_js && !(*inner).closed {
                call_js(inner);
            }
        }
    });
}

/// # Safety
/// `inner` is alive and open, on the JS thread outside any other callback.
unsafe fn call_js(inner: *mut Inner) {
    let env = Env((*inner).env);
    let mut scope = ptr::null_mut();
    if sys::napi_open_handle_scope(env.0, &mut scope) != sys::napi_ok {
        return;
    }
    let mut func = ptr::null_mut();
    let mut recv = ptr::null_mut();
    let mut result = ptr::null_mut();
    let mut pending = false;
    if sys::napi_get_reference_value(env.0, (*inner).callback, &mut func) == sys::napi_ok
        // make_callback wants an object as `this`.
        && sys::napi_get_global(env.0, &mut recv) == sys::napi_ok
        && sys::napi_make_callback(env.0, (*inner).context, recv, func, 0, ptr::null(), &mut result) != sys::napi_ok
        && sys::napi_is_exception_pending(env.0, &mut pending) == sys::napi_ok
        && pending
    {
        // As for any I/O callback: a throw goes to process.on('uncaughtException').
        report_uncaught(env);
    }
    sys::napi_close_handle_scope(env.0, scope);
}
