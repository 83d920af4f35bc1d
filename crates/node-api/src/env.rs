//! `Env` and `Value`: creating, inspecting and converting JS values.
//!
//! Every `unsafe` block here relies on the same invariant: an `Env` is only
//! ever constructed by this crate from the `napi_env` Node passed to the
//! callback now running on the JS thread, and `Env`/`Value` are `!Send`, so
//! the env is live and every `Value` handle belongs to it.

use std::ffi::{c_void, CString};
use std::mem::MaybeUninit;
use std::ptr;

use crate::sys;
use crate::{Error, Result};

/// The Node-API environment of the callback now running (wraps `napi_env`).
#[derive(Debug, Clone, Copy)]
pub struct Env(pub(crate) sys::napi_env);

/// A JS value handle, valid until the current callback returns.
#[repr(transparent)] // so `&[Value]` can be passed as `*const napi_value`
#[derive(Debug, Clone, Copy)]
pub struct Value(pub(crate) sys::napi_value);

/// The result of JS `typeof`, with `null` split out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Undefined,
    Null,
    Boolean,
    Number,
    String,
    Symbol,
    Object,
    Function,
    External,
    BigInt,
}

impl Env {
    /// Turns a Node-API status into a `Result`, naming `func` in the error.
    pub(crate) fn check(self, func: &str, status: sys::napi_status) -> Result<()> {
        let expected = match status {
            sys::napi_ok => return Ok(()),
            sys::napi_object_expected => "expected an object",
            sys::napi_array_expected => "expected an array",
            _ => "",
        };
        let mut pending = false;
        // SAFETY: see module docs; `pending` is a valid out-pointer. Callable
        // even while an exception is pending.
        unsafe { sys::napi_is_exception_pending(self.0, &mut pending) };
        Err(if pending {
            Error::Pending
        } else if !expected.is_empty() {
            Error::Type(expected.into())
        } else {
            Error::Code {
                code: "ERR_NAPI".into(),
                message: format!("{func} failed with status {status}"),
            }
        })
    }

    /// Runs a Node-API call that writes its result through an out-pointer.
    pub(crate) fn out<T>(
        self,
        func: &str,
        call: impl FnOnce(*mut T) -> sys::napi_status,
    ) -> Result<T> {
        let mut out = MaybeUninit::uninit();
        self.check(func, call(out.as_mut_ptr()))?;
        // SAFETY: Node-API functions write their result when they return napi_ok.
        Ok(unsafe { out.assume_init() })
    }

    pub fn undefined(self) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_get_undefined", |out| unsafe {
            sys::napi_get_undefined(self.0, out)
        })
        .map(Value)
    }

    pub fn null(self) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_get_null", |out| unsafe {
            sys::napi_get_null(self.0, out)
        })
        .map(Value)
    }

    pub fn boolean(self, b: bool) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_get_boolean", |out| unsafe {
            sys::napi_get_boolean(self.0, b, out)
        })
        .map(Value)
    }

    pub fn int32(self, v: i32) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_create_int32", |out| unsafe {
            sys::napi_create_int32(self.0, v, out)
        })
        .map(Value)
    }

    pub fn uint32(self, v: u32) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_create_uint32", |out| unsafe {
            sys::napi_create_uint32(self.0, v, out)
        })
        .map(Value)
    }

    pub fn double(self, v: f64) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_create_double", |out| unsafe {
            sys::napi_create_double(self.0, v, out)
        })
        .map(Value)
    }

    pub fn string(self, s: &str) -> Result<Value> {
        // SAFETY: see module docs; `s` is valid UTF-8 of the given length (no
        // NUL terminator needed when the length is explicit).
        self.out("napi_create_string_utf8", |out| unsafe {
            sys::napi_create_string_utf8(self.0, s.as_ptr().cast(), s.len(), out)
        })
        .map(Value)
    }

    pub fn object(self) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_create_object", |out| unsafe {
            sys::napi_create_object(self.0, out)
        })
        .map(Value)
    }

    pub fn array(self, len: usize) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_create_array_with_length", |out| unsafe {
            sys::napi_create_array_with_length(self.0, len, out)
        })
        .map(Value)
    }

    pub fn set_element(self, array: Value, index: u32, v: Value) -> Result<()> {
        // SAFETY: see module docs.
        let status = unsafe { sys::napi_set_element(self.0, array.0, index, v.0) };
        self.check("napi_set_element", status)
    }

    pub fn element(self, array: Value, index: u32) -> Result<Value> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_get_element", |out| unsafe {
            sys::napi_get_element(self.0, array.0, index, out)
        })
        .map(Value)
    }

    /// `Error::Type("expected an array")` if `array` is not an array.
    pub fn array_length(self, array: Value) -> Result<u32> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_get_array_length", |out| unsafe {
            sys::napi_get_array_length(self.0, array.0, out)
        })
    }

    pub fn set_named(self, obj: Value, name: &str, v: Value) -> Result<()> {
        let name = c_name(name)?;
        // SAFETY: see module docs; `name` is NUL-terminated.
        let status = unsafe { sys::napi_set_named_property(self.0, obj.0, name.as_ptr(), v.0) };
        self.check("napi_set_named_property", status)
    }

    pub fn named(self, obj: Value, name: &str) -> Result<Value> {
        let name = c_name(name)?;
        // SAFETY: see module docs; `name` is NUL-terminated, `out` a valid out-pointer.
        self.out("napi_get_named_property", |out| unsafe {
            sys::napi_get_named_property(self.0, obj.0, name.as_ptr(), out)
        })
        .map(Value)
    }

    pub fn type_of(self, v: Value) -> Result<ValueType> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        let t = self.out("napi_typeof", |out| unsafe {
            sys::napi_typeof(self.0, v.0, out)
        })?;
        Ok(match t {
            sys::napi_undefined => ValueType::Undefined,
            sys::napi_null => ValueType::Null,
            sys::napi_boolean => ValueType::Boolean,
            sys::napi_number => ValueType::Number,
            sys::napi_string => ValueType::String,
            sys::napi_symbol => ValueType::Symbol,
            sys::napi_object => ValueType::Object,
            sys::napi_function => ValueType::Function,
            sys::napi_external => ValueType::External,
            sys::napi_bigint => ValueType::BigInt,
            other => {
                return Err(Error::Code {
                    code: "ERR_NAPI".into(),
                    message: format!("napi_typeof returned unknown type {other}"),
                })
            }
        })
    }

    /// `Error::Type("<what> must be a <noun>")` unless `v` has type `expected`.
    pub(crate) fn expect(
        self,
        v: Value,
        expected: ValueType,
        what: &str,
        noun: &str,
    ) -> Result<()> {
        if self.type_of(v)? == expected {
            Ok(())
        } else {
            Err(Error::Type(format!("{what} must be a {noun}")))
        }
    }

    /// An integral number in `i32` range; otherwise `Error::Type` (not a
    /// number) or `Error::Range` (fractional, NaN or out of range). Stricter
    /// than JS `ToInt32`, which would silently truncate and wrap.
    pub fn to_i32(self, v: Value, what: &str) -> Result<i32> {
        self.to_integer(v, what, i32::MIN.into(), i32::MAX.into())
            .map(|n| n as i32)
    }

    /// Like [`Env::to_i32`], for the `u32` range.
    pub fn to_u32(self, v: Value, what: &str) -> Result<u32> {
        self.to_integer(v, what, 0.0, u32::MAX.into())
            .map(|n| n as u32)
    }

    fn to_integer(self, v: Value, what: &str, min: f64, max: f64) -> Result<f64> {
        let n = self.to_f64(v, what)?;
        if n.fract() == 0.0 && (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(Error::Range(format!(
                "{what} must be an integer between {min} and {max}"
            )))
        }
    }

    pub fn to_f64(self, v: Value, what: &str) -> Result<f64> {
        self.expect(v, ValueType::Number, what, "number")?;
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_get_value_double", |out| unsafe {
            sys::napi_get_value_double(self.0, v.0, out)
        })
    }

    pub fn to_bool(self, v: Value, what: &str) -> Result<bool> {
        self.expect(v, ValueType::Boolean, what, "boolean")?;
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_get_value_bool", |out| unsafe {
            sys::napi_get_value_bool(self.0, v.0, out)
        })
    }

    pub fn to_string(self, v: Value, what: &str) -> Result<String> {
        self.expect(v, ValueType::String, what, "string")?;
        // SAFETY: see module docs; a null buffer asks for the UTF-8 length only.
        let len = self.out("napi_get_value_string_utf8", |out| unsafe {
            sys::napi_get_value_string_utf8(self.0, v.0, ptr::null_mut(), 0, out)
        })?;
        let mut buf = vec![0u8; len + 1]; // Node always writes a NUL terminator
                                          // SAFETY: see module docs; `buf` is writable for `buf.len()` bytes.
        let written = self.out("napi_get_value_string_utf8", |out| unsafe {
            sys::napi_get_value_string_utf8(self.0, v.0, buf.as_mut_ptr().cast(), buf.len(), out)
        })?;
        buf.truncate(written);
        // V8 emits valid UTF-8 (lone surrogates become U+FFFD), so this never copies.
        Ok(String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
    }

    /// Registers `hook(handle, arg)` to run when this environment shuts down
    /// (process exit or a worker ending). Node keeps the environment, and so
    /// this addon's code, alive until `napi_remove_async_cleanup_hook` is
    /// called with the returned handle: that is what lets libuv close callbacks that
    /// live in this library run before a worker unloads it. `hook` is called
    /// from C, so it must not panic (a panic there aborts the process).
    // Not `unsafe`: Node only hands `arg` back to `hook`, which, as a safe
    // fn, must cope with any pointer. Clippy cannot see that.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn add_async_cleanup_hook(
        self,
        hook: unsafe extern "C" fn(sys::napi_async_cleanup_hook_handle, *mut c_void),
        arg: *mut c_void,
    ) -> Result<sys::napi_async_cleanup_hook_handle> {
        // SAFETY: see module docs; `out` is a valid out-pointer.
        self.out("napi_add_async_cleanup_hook", |out| unsafe { sys::napi_add_async_cleanup_hook(self.0, Some(hook), arg, out) })
    }
}

/// Property names go to C as NUL-terminated strings.
fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::Type(format!("property name {name:?} contains NUL")))
}
