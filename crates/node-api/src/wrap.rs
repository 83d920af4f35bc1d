//! Rust values owned by JS objects, and references that keep JS values alive.

use std::ffi::c_void;
use std::ptr;

use crate::error::guard;
use crate::sys;
use crate::{Env, Error, Result, Value, ValueType};

/// Identifies which Rust type a wrapped object holds: use one random 128-bit
/// tag per type, e.g. `const CONN: TypeTag = TypeTag { lower: 0x.., upper: 0x.. };`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeTag {
    pub lower: u64,
    pub upper: u64,
}

impl TypeTag {
    fn raw(&self) -> sys::napi_type_tag {
        sys::napi_type_tag {
            lower: self.lower,
            upper: self.upper,
        }
    }
}

/// A strong reference (refcount 1) that keeps a JS value alive across
/// callbacks. Must be [`Ref::delete`]d on the JS thread, or the value leaks.
#[derive(Debug)]
pub struct Ref(sys::napi_ref);

impl Env {
    /// A new plain object that owns `value` (dropped when the object is
    /// garbage-collected) and carries `tag`.
    pub fn wrap<T: 'static>(self, value: T, tag: &TypeTag) -> Result<Value> {
        let obj = self.object()?;
        let raw_tag = tag.raw();
        // SAFETY: see `env` module docs; `obj` is a fresh, untagged object.
        self.check("napi_type_tag_object", unsafe {
            sys::napi_type_tag_object(self.0, obj.0, &raw_tag)
        })?;
        let native = Box::into_raw(Box::new(value));
        // SAFETY: see `env` module docs; from here the finalizer owns `native`.
        let status = unsafe {
            sys::napi_wrap(
                self.0,
                obj.0,
                native.cast(),
                Some(drop_box::<T>),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if let Err(e) = self.check("napi_wrap", status) {
            // SAFETY: napi_wrap failed, so it took no ownership of `native`.
            drop(unsafe { Box::from_raw(native) });
            return Err(e);
        }
        Ok(obj)
    }

    /// The `T` inside an object made by [`Env::wrap`] with the same `tag`;
    /// `Error::Type("<what> is not the expected native object")` otherwise.
    ///
    /// The borrow is tied to `obj`: a `Value` only lives for the current
    /// callback, during which its handle keeps the object (and so the `T`)
    /// alive. Pass `&args[i]` to borrow for the whole callback.
    pub fn unwrap<'v, T: 'static>(
        self,
        obj: &'v Value,
        tag: &TypeTag,
        what: &str,
    ) -> Result<&'v T> {
        let mismatch = || Error::Type(format!("{what} is not the expected native object"));
        if self.type_of(*obj)? != ValueType::Object {
            return Err(mismatch());
        }
        let raw_tag = tag.raw();
        // SAFETY: see `env` module docs; `out` is a valid out-pointer.
        let tagged = self.out("napi_check_object_type_tag", |out| unsafe {
            sys::napi_check_object_type_tag(self.0, obj.0, &raw_tag, out)
        })?;
        if !tagged {
            return Err(mismatch());
        }
        // SAFETY: see `env` module docs; `out` is a valid out-pointer.
        let native = self.out("napi_unwrap", |out| unsafe {
            sys::napi_unwrap(self.0, obj.0, out)
        })?;
        // SAFETY: only `wrap::<T>` attaches this tag (one tag per type), so
        // `native` is the `Box<T>` it leaked; the object, and so the box,
        // outlives `'v` (see above), and only shared borrows are handed out.
        Ok(unsafe { &*native.cast::<T>() })
    }

    /// A strong reference to `v`.
    pub fn reference(self, v: Value) -> Result<Ref> {
        // SAFETY: see `env` module docs; `out` is a valid out-pointer.
        self.out("napi_create_reference", |out| unsafe {
            sys::napi_create_reference(self.0, v.0, 1, out)
        })
        .map(Ref)
    }
}

impl Ref {
    pub fn get(&self, env: Env) -> Result<Value> {
        // SAFETY: see `env` module docs; `self.0` is live until `delete`.
        env.out("napi_get_reference_value", |out| unsafe {
            sys::napi_get_reference_value(env.0, self.0, out)
        })
        .map(Value)
    }

    pub fn delete(self, env: Env) -> Result<()> {
        // SAFETY: see `env` module docs; consuming `self` prevents reuse.
        env.check("napi_delete_reference", unsafe {
            sys::napi_delete_reference(env.0, self.0)
        })
    }
}

unsafe extern "C" fn drop_box<T>(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    guard("wrapped object finalizer", || {
        // SAFETY: `data` is the `Box<T>` leaked by `wrap::<T>`; Node finalizes once.
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
    });
}
