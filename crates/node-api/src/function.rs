//! Exporting Rust functions to JS, calling JS functions, throwing errors.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;

use crate::error::{guard, panic_error};
use crate::sys;
use crate::{Env, Error, Result, Value, ValueType};

/// A native function as exported by [`Env::function`].
pub type Callback = fn(Env, &[Value]) -> Result<Value>;

/// How many arguments an exported function receives; missing ones are `undefined`.
pub const MAX_ARGS: usize = 8;

/// A native function bound to a state: it gets `&T` straight from the call,
/// with no lookup or type check (it cannot be called with another state).
pub type Method<T> = fn(Env, &T, &[Value]) -> Result<Value>;

/// What a bound function's data pointer holds; freed when the function is collected.
struct Bound<T> {
    f: Method<T>,
    state: Rc<T>,
}

type CreateError = unsafe extern "C" fn(
    sys::napi_env,
    sys::napi_value,
    sys::napi_value,
    *mut sys::napi_value,
) -> sys::napi_status;

impl Env {
    /// Creates a JS function that calls `f` with exactly [`MAX_ARGS`]
    /// arguments (extra ones are dropped, missing ones are `undefined`).
    /// An `Err` or a panic from `f` is thrown into JS; a panic becomes an
    /// `Error` with code `ERR_INTERNAL_PANIC`.
    pub fn function(self, name: &str, f: Callback) -> Result<Value> {
        // SAFETY: see `env` module docs; `name` has an explicit length; the
        // fn pointer travels as the callback's data pointer (it is 'static).
        self.out("napi_create_function", |out| unsafe {
            sys::napi_create_function(
                self.0,
                name.as_ptr().cast(),
                name.len(),
                Some(trampoline),
                f as *mut c_void,
                out,
            )
        })
        .map(Value)
    }

    /// Creates a JS function that calls `f` with `state` (shared: the state
    /// lives as long as the last function bound to it), otherwise like
    /// [`Env::function`]. For per-object methods on a hot path: the state
    /// comes with the call instead of from an unwrap.
    pub fn method<T: 'static>(self, name: &str, state: &Rc<T>, f: Method<T>) -> Result<Value> {
        let bound = Box::into_raw(Box::new(Bound { f, state: Rc::clone(state) }));
        // SAFETY: see `env` module docs; `name` has an explicit length.
        let func = self.out("napi_create_function", |out| unsafe {
            sys::napi_create_function(self.0, name.as_ptr().cast(), name.len(), Some(method_trampoline::<T>), bound.cast(), out)
        });
        let func = match func {
            Ok(func) => func,
            Err(e) => {
                // SAFETY: the function was not created, so nothing else holds `bound`.
                drop(unsafe { Box::from_raw(bound) });
                return Err(e);
            }
        };
        // SAFETY: see `env` module docs; from here the finalizer owns `bound`.
        let status = unsafe { sys::napi_add_finalizer(self.0, func, bound.cast(), Some(drop_bound::<T>), ptr::null_mut(), ptr::null_mut()) };
        // Without a finalizer the state would leak, never dangle: report, do not free.
        self.check("napi_add_finalizer", status)?;
        Ok(Value(func))
    }

    /// Calls `func` with `this = recv`. If it throws, the exception stays
    /// pending and `Error::Pending` is returned; a non-function gives
    /// `Error::Type("callback must be a function")`.
    pub fn call(self, func: Value, recv: Value, args: &[Value]) -> Result<Value> {
        // Node reports a non-function only as an opaque `napi_invalid_arg`.
        self.expect(func, ValueType::Function, "callback", "function")?;
        // SAFETY: see `env` module docs; `Value` is `repr(transparent)` over
        // `napi_value`, so `args` is a valid array of `args.len()` handles.
        self.out("napi_call_function", |out| unsafe {
            sys::napi_call_function(
                self.0,
                recv.0,
                func.0,
                args.len(),
                args.as_ptr().cast(),
                out,
            )
        })
        .map(Value)
    }

    /// Throws `e` as a JS exception (`Error::Pending`: leaves the pending one).
    /// Best effort: if even creating the error fails there is nothing left to report to.
    pub fn throw(self, e: Error) {
        let _ = self.try_throw(e);
    }

    fn try_throw(self, e: Error) -> Result<()> {
        let (create, code, message): (CreateError, _, _) = match e {
            Error::Pending => return Ok(()),
            Error::Type(message) => (sys::napi_create_type_error, None, message),
            Error::Range(message) => (sys::napi_create_range_error, Some("ERR_OUT_OF_RANGE".into()), message),
            Error::Code { code, message } => (sys::napi_create_error, Some(code), message),
        };
        let code = match code {
            Some(code) => self.string(&code)?.0,
            None => ptr::null_mut(), // no `.code` property
        };
        let message = self.string(&message)?;
        // SAFETY: see `env` module docs; `code` is a string handle or null.
        let error = self.out("napi_create_error", |out| unsafe {
            create(self.0, code, message.0, out)
        })?;
        // SAFETY: see `env` module docs.
        self.check("napi_throw", unsafe { sys::napi_throw(self.0, error) })
    }

    /// Takes the pending JS exception, if there is one, so that the native
    /// call can go on (Node-API calls that may run JS refuse to while one is
    /// pending); the caller decides what it meant. `undefined` when none was.
    pub fn take_exception(self) -> Result<Value> {
        // SAFETY: see `env` module docs; `out` is a valid out-pointer.
        self.out("napi_get_and_clear_last_exception", |out| unsafe {
            sys::napi_get_and_clear_last_exception(self.0, out)
        })
        .map(Value)
    }

    /// Runs `f` on behalf of a call from JS: an `Err` or a panic is thrown,
    /// and the returned handle is then null, which JS sees as `undefined`.
    pub(crate) fn run(self, f: impl FnOnce() -> Result<Value>) -> sys::napi_value {
        let error = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(value)) => return value.0,
            Ok(Err(error)) => error,
            Err(payload) => panic_error(payload),
        };
        self.throw(error);
        ptr::null_mut()
    }
}

/// The one native callback behind every [`Env::function`].
unsafe extern "C" fn trampoline(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let env = Env(env);
    env.run(|| {
        let (argv, data) = callback_args(env, info)?;
        // SAFETY: `data` is the `Callback` that `Env::function` registered with this trampoline.
        let f = unsafe { std::mem::transmute::<*mut c_void, Callback>(data) };
        f(env, &argv)
    })
}

/// The call's arguments, padded with `undefined` to [`MAX_ARGS`], and its data pointer.
fn callback_args(env: Env, info: sys::napi_callback_info) -> Result<([Value; MAX_ARGS], *mut c_void)> {
    let mut argc = MAX_ARGS;
    let mut argv = [ptr::null_mut(); MAX_ARGS];
    let mut data = ptr::null_mut();
    // SAFETY: Node called us with a live env and callback info; `argv` has
    // room for `argc` handles and Node pads it with `undefined`.
    let status = unsafe { sys::napi_get_cb_info(env.0, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data) };
    env.check("napi_get_cb_info", status)?;
    Ok((argv.map(Value), data))
}

/// The native callback behind every [`Env::method`].
unsafe extern "C" fn method_trampoline<T: 'static>(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let env = Env(env);
    env.run(|| {
        let (argv, data) = callback_args(env, info)?;
        // SAFETY: `data` is the `Bound<T>` that `Env::method` registered with
        // this trampoline; the function being called keeps it alive.
        let bound = unsafe { &*data.cast::<Bound<T>>() };
        (bound.f)(env, &bound.state, &argv)
    })
}

unsafe extern "C" fn drop_bound<T>(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    guard("bound function finalizer", || {
        // SAFETY: `data` is the `Bound<T>` leaked by `Env::method`; Node finalizes once.
        drop(unsafe { Box::from_raw(data.cast::<Bound<T>>()) });
    });
}
