//! Hand-written Node-API bindings: the raw declarations the addon needs
//! ([`sys`]) and a small safe layer over them. No dependencies.
//!
//! # Threading
//!
//! [`Env`], [`Value`] and [`TypedArray`] belong to the JS thread and
//! are only valid inside the native callback that produced them: they are
//! `!Send`, and must not be stored past the callback's return. Native state
//! reaches JS as functions bound to it ([`Env::method`]).
//! [`ThreadsafeFunction`] is the one thing usable from other threads: it
//! queues a call that Node later runs on the JS thread. [`LoopWatch`] lets
//! native code do its I/O on the JS thread from Node's own event loop.
//!
//! # Errors and panics
//!
//! Fallible calls return [`Result`]. A native function exported with
//! [`Env::function`] returns its [`Error`] and the trampoline throws it into
//! JS. Panics never unwind into Node: in an exported function they are
//! thrown as an `Error` with code `ERR_INTERNAL_PANIC`; in finalizers and
//! threadsafe-function callbacks they are swallowed and printed to stderr.
//!
//! # Registering a module
//!
//! ```text
//! fn init(env: node_api::Env, exports: node_api::Value) -> node_api::Result<node_api::Value> {
//!     env.set_named(exports, "add", env.function("add", add)?)?;
//!     Ok(exports)
//! }
//! node_api::register_module!(init);
//! ```

mod env;
mod error;
mod event_loop;
mod function;
pub mod sys;
mod tsfn;
mod typed_array;

pub use env::{Env, Value, ValueType};
pub use error::{Error, Result};
pub use event_loop::{LoopWatch, Wake};
pub use function::{Callback, Method, MAX_ARGS};
pub use tsfn::ThreadsafeFunction;
pub use typed_array::{TypedArray, TypedArrayKind};

/// Defines the symbols Node looks up when it loads the addon; `init` is a
/// `fn(Env, Value) -> Result<Value>` that receives and returns `exports`.
#[macro_export]
macro_rules! register_module {
    ($init:path) => {
        #[no_mangle]
        pub unsafe extern "C" fn napi_register_module_v1(
            env: $crate::sys::napi_env,
            exports: $crate::sys::napi_value,
        ) -> $crate::sys::napi_value {
            // SAFETY: Node calls this once, on the JS thread, with a live env.
            unsafe { $crate::__register(env, exports, $init) }
        }

        /// The Node-API version the addon is built against.
        #[no_mangle]
        pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
            8
        }
    };
}

/// Support for [`register_module!`]; not part of the API.
///
/// # Safety
/// `env` and `exports` must be the arguments Node passed to the module's
/// registration function, on the JS thread.
#[doc(hidden)]
pub unsafe fn __register(
    env: sys::napi_env,
    exports: sys::napi_value,
    init: fn(Env, Value) -> Result<Value>,
) -> sys::napi_value {
    let env = Env(env);
    env.run(|| init(env, Value(exports)))
}
