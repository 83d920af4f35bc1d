//! Errors reported by native code, and keeping panics out of Node.

use std::any::Any;
use std::fmt;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub type Result<T> = std::result::Result<T, Error>;

/// What a native function reports. The export trampoline turns it into a
/// thrown JS exception (see [`Env::throw`](crate::Env::throw)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A JS exception is already pending (e.g. a JS callback threw): throw nothing more.
    Pending,
    /// Thrown as `TypeError(message)`.
    Type(String),
    /// Thrown as `RangeError(message)` with `.code = 'ERR_OUT_OF_RANGE'`, as
    /// Node's own range errors (and the facade's argument checks) are.
    Range(String),
    /// Thrown as `Error(message)` with `.code = code`.
    Code { code: String, message: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Pending => f.write_str("a JavaScript exception is pending"),
            Error::Type(message) => write!(f, "TypeError: {message}"),
            Error::Range(message) => write!(f, "RangeError: {message}"),
            Error::Code { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The error a panic in an exported function is thrown as.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>) -> Error {
    Error::Code {
        code: "ERR_INTERNAL_PANIC".into(),
        message: format!("gaio internal error: {}", panic_message(&*payload)),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    match payload.downcast_ref::<&str>() {
        Some(s) => s,
        None => payload
            .downcast_ref::<String>()
            .map_or("unknown panic", String::as_str),
    }
}

/// Runs a callback Node invokes where nothing can be thrown (finalizers, the
/// threadsafe-function trampoline): a panic must not unwind into C, so it is
/// swallowed and noted on stderr.
pub(crate) fn guard(context: &str, f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        // `eprintln!` panics if stderr is gone; a failed write is ignored instead.
        let _ = writeln!(
            std::io::stderr(),
            "node-api: swallowed panic in {context}: {}",
            panic_message(&*payload)
        );
    }
}
