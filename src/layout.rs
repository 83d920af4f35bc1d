//! The crossing format between the facade and the glue: record layouts,
//! request kinds, where read bytes are, the engine's error codes, and the
//! caps on the sizes the facade may ask for. Defined here only; the facade
//! reads them from the addon's `layout` export.

use gaio_engine::Error as EngineError;
use node_api::{Env, Result, Value};

/// Submission record: [kind, req, conn, arg, extra, deadline ms or -1].
pub const SUBMIT_FIELDS: usize = 6;
/// Completion record: [req, size, error, where, offset].
pub const TAKE_FIELDS: usize = 5;
/// A submission's deadline field when it has none.
pub const NO_DEADLINE: i32 = -1;

/// The largest swap arena (`swapSize`), and so the largest swap read
/// (`bufferSize`), in bytes: arena offsets and read sizes then fit a
/// completion record's i32 fields with room to spare.
pub const MAX_SWAP_SIZE: usize = 1 << 30;
/// The most records either record memory may hold (`records()` takes lengths
/// in fields: at most this many times the record's fields). Generous: a
/// watcher has at most 2^20 connections, and the facade grows its memory to
/// twice the batch it must hold, so batches of up to 2^23 requests fit.
pub const MAX_RECORDS: usize = 1 << 24;

pub const KIND_READ: i32 = 0;
pub const KIND_READ_FULL: i32 = 1;
pub const KIND_WRITE: i32 = 2;
pub const KIND_ACCEPT: i32 = 3;
pub const KIND_CONNECT: i32 = 4;
pub const KIND_FREE: i32 = 5;
pub const KIND_CLOSE_WRITE: i32 = 6;

/// `where` values besides the swap arena index (0 or 1).
pub const WHERE_NONE: i32 = -1;
/// A read-full's own bytes: `offset` indexes them for `copyOwned`.
pub const WHERE_OWNED: i32 = 2;
/// An accept or connect: `offset` is the new socket's descriptor.
pub const WHERE_SOCKET: i32 = 3;

/// The engine's errors, as negative numbers (positive ones are errno values).
pub const EOF: i32 = -1;
pub const DEADLINE: i32 = -2;
pub const CONN_CLOSED: i32 = -3;
pub const WATCHER_CLOSED: i32 = -4;
pub const INVALID_OP: i32 = -5;
pub const EMPTY_BUFFER: i32 = -6;

/// Exhaustive, so that a new engine error cannot go unnamed.
pub fn error_code(error: EngineError) -> i32 {
    match error {
        EngineError::Os(errno) => errno,
        EngineError::Eof => EOF,
        EngineError::Deadline => DEADLINE,
        EngineError::ConnClosed => CONN_CLOSED,
        EngineError::WatcherClosed => WATCHER_CLOSED,
        EngineError::WrongRole => INVALID_OP,
        EngineError::EmptyBuffer => EMPTY_BUFFER,
    }
}

/// The object the facade reads all of the above from.
pub fn export(env: Env) -> Result<Value> {
    let layout = env.object()?;
    env.set_named(layout, "submitFields", env.uint32(SUBMIT_FIELDS as u32)?)?;
    env.set_named(layout, "takeFields", env.uint32(TAKE_FIELDS as u32)?)?;
    env.set_named(layout, "noDeadline", env.int32(NO_DEADLINE)?)?;
    env.set_named(layout, "maxSwapSize", env.uint32(MAX_SWAP_SIZE as u32)?)?;
    env.set_named(layout, "maxRecords", env.uint32(MAX_RECORDS as u32)?)?;
    let groups: [(&str, &[(&str, i32)]); 3] = [
        (
            "kinds",
            &[
                ("Read", KIND_READ),
                ("ReadFull", KIND_READ_FULL),
                ("Write", KIND_WRITE),
                ("Accept", KIND_ACCEPT),
                ("Connect", KIND_CONNECT),
                ("Free", KIND_FREE),
                ("CloseWrite", KIND_CLOSE_WRITE),
            ],
        ),
        ("where", &[("None", WHERE_NONE), ("Owned", WHERE_OWNED), ("Socket", WHERE_SOCKET)]),
        (
            "errors",
            &[
                ("EOF", EOF),
                ("ERR_DEADLINE", DEADLINE),
                ("ERR_CONN_CLOSED", CONN_CLOSED),
                ("ERR_WATCHER_CLOSED", WATCHER_CLOSED),
                ("ERR_INVALID_OP", INVALID_OP),
                ("ERR_EMPTY_BUFFER", EMPTY_BUFFER),
            ],
        ),
    ];
    for (group, entries) in groups {
        let object = env.object()?;
        for &(name, value) in entries {
            env.set_named(object, name, env.int32(value)?)?;
        }
        env.set_named(layout, group, object)?;
    }
    Ok(layout)
}
