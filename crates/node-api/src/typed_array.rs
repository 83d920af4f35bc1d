//! Borrowing TypedArray memory, and lending Rust memory to JS as an ArrayBuffer.

use std::any::Any;
use std::ffi::c_void;
use std::ptr;

use crate::error::guard;
use crate::sys;
use crate::{Env, Error, Result, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedArrayKind {
    Int8,
    Uint8,
    Uint8Clamped,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Float32,
    Float64,
    BigInt64,
    BigUint64,
}

impl TypedArrayKind {
    pub fn element_size(self) -> usize {
        use TypedArrayKind::*;
        match self {
            Int8 | Uint8 | Uint8Clamped => 1,
            Int16 | Uint16 => 2,
            Int32 | Uint32 | Float32 => 4,
            Float64 | BigInt64 | BigUint64 => 8,
        }
    }

    fn from_raw(kind: sys::napi_typedarray_type) -> Option<Self> {
        use TypedArrayKind::*;
        Some(match kind {
            sys::napi_int8_array => Int8,
            sys::napi_uint8_array => Uint8,
            sys::napi_uint8_clamped_array => Uint8Clamped,
            sys::napi_int16_array => Int16,
            sys::napi_uint16_array => Uint16,
            sys::napi_int32_array => Int32,
            sys::napi_uint32_array => Uint32,
            sys::napi_float32_array => Float32,
            sys::napi_float64_array => Float64,
            sys::napi_bigint64_array => BigInt64,
            sys::napi_biguint64_array => BigUint64,
            _ => return None,
        })
    }
}

/// The memory behind a TypedArray (any kind, `Buffer` included).
///
/// Valid only during the current callback, and only while JS is not
/// re-entered (e.g. by [`Env::call`]): JS could detach the buffer. Do not
/// hold the bytes of two `TypedArray`s over the same memory (the same array
/// twice, overlapping views) while one of them is borrowed mutably.
///
/// The fields are private so that safe code cannot point `bytes` elsewhere.
#[derive(Debug)]
pub struct TypedArray {
    kind: TypedArrayKind,
    data: *mut u8,
    byte_len: usize,
    element_len: usize,
}

impl TypedArray {
    pub fn kind(&self) -> TypedArrayKind {
        self.kind
    }

    /// The first element; null when the array is empty or detached.
    pub fn data(&self) -> *mut u8 {
        self.data
    }

    pub fn byte_len(&self) -> usize {
        self.byte_len
    }

    pub fn element_len(&self) -> usize {
        self.element_len
    }

    pub fn bytes(&self) -> &[u8] {
        if self.data.is_null() {
            return &[];
        }
        // SAFETY: per the type's contract, `data` points at `byte_len` live bytes.
        unsafe { std::slice::from_raw_parts(self.data, self.byte_len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        if self.data.is_null() {
            return &mut [];
        }
        // SAFETY: as in `bytes`; `&mut self` keeps this the only Rust view.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.byte_len) }
    }
}

impl Env {
    /// `Error::Type("<what> must be a TypedArray")` for anything else.
    pub fn typed_array(self, v: Value, what: &str) -> Result<TypedArray> {
        // SAFETY: see `env` module docs; `out` is a valid out-pointer.
        let is_typed_array = self.out("napi_is_typedarray", |out| unsafe {
            sys::napi_is_typedarray(self.0, v.0, out)
        })?;
        if !is_typed_array {
            return Err(Error::Type(format!("{what} must be a TypedArray")));
        }
        let (mut kind, mut element_len, mut data) = (0, 0, ptr::null_mut());
        // SAFETY: see `env` module docs; the outputs we skip may be null.
        let status = unsafe {
            sys::napi_get_typedarray_info(
                self.0,
                v.0,
                &mut kind,
                &mut element_len,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        self.check("napi_get_typedarray_info", status)?;
        let kind = TypedArrayKind::from_raw(kind)
            .ok_or_else(|| Error::Type(format!("{what} has an unsupported TypedArray kind")))?;
        // `data` already includes the view's byte offset.
        Ok(TypedArray {
            kind,
            data: data.cast(),
            byte_len: element_len * kind.element_size(),
            element_len,
        })
    }

    /// An ArrayBuffer over `len` bytes at `data`, without copying.
    /// `keep_alive` (typically the owner of that memory) is dropped, on the JS
    /// thread, once JS has garbage-collected the buffer.
    ///
    /// # Safety
    /// Until `keep_alive` is dropped, `data` must stay valid for reads and
    /// writes of `len` bytes, and Rust must not access that memory in ways
    /// that race with JS (which reads and writes it on the JS thread).
    pub unsafe fn external_arraybuffer(
        self,
        data: *mut u8,
        len: usize,
        keep_alive: Box<dyn Any>,
    ) -> Result<Value> {
        // `Box<dyn Any>` is a fat pointer; box it again to pass it as `void*`.
        let hint = Box::into_raw(Box::new(keep_alive));
        // SAFETY: see `env` module docs; the caller vouches for `data`; the
        // finalizer takes back `hint`.
        // On failure `hint` is leaked rather than freed: Node may already have
        // run the finalizer on some failure paths, and a leak beats a double free.
        self.out("napi_create_external_arraybuffer", |out| unsafe {
            sys::napi_create_external_arraybuffer(
                self.0,
                data.cast(),
                len,
                Some(drop_keep_alive),
                hint.cast(),
                out,
            )
        })
        .map(Value)
    }
}

unsafe extern "C" fn drop_keep_alive(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    guard("ArrayBuffer finalizer", || {
        // SAFETY: `hint` came from `Box::into_raw` in `external_arraybuffer`,
        // and Node runs this finalizer once.
        drop(unsafe { Box::from_raw(hint.cast::<Box<dyn Any>>()) });
    });
}
