//! Checked C arguments: a handle reference, an out-pointer, a NUL-terminated UTF-8 string, a
//! pointer + length array, and a C string written into a caller's buffer. Each check fails
//! with INVALID_ARGUMENT and a message naming the argument ("engine is NULL"), so the exports
//! never repeat the NULL / UTF-8 / out-pointer checks by hand. Cost: O(1), and O(len) for the
//! UTF-8 check and copies.

use crate::failure::Failure;
use std::ffi::{CStr, c_char};
use std::ptr::NonNull;

/// `&T` from a pointer that must not be NULL.
///
/// # Safety
/// `p` must be NULL or point to a live `T` for `'a`.
pub(crate) unsafe fn try_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL, and live for 'a by the caller's contract.
    Ok(unsafe { &*p })
}

/// A non-NULL out-pointer, checked once; [`Out::write`] stores through it.
#[derive(Debug)]
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// # Safety
    /// `p` must be NULL or writable for a `T` for as long as the `Out` is used.
    pub(crate) unsafe fn new(p: *mut T, name: &str) -> Result<Self, Failure> {
        NonNull::new(p)
            .map(Self)
            .ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
    }

    /// Stores `v` (the old contents are not read or dropped).
    pub(crate) fn write(&self, v: T) {
        // SAFETY: non-NULL by construction, writable by the contract of `Out::new`.
        unsafe { self.0.as_ptr().write(v) }
    }
}

/// A required UTF-8 string argument.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::invalid(format!(
            "{name} is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// A pointer + length array; NULL is allowed only with length 0.
///
/// # Safety
/// `p` must be NULL or point to `n` readable values.
pub(crate) unsafe fn slice_arg<'a, T>(
    p: *const T,
    n: usize,
    name: &str,
) -> Result<&'a [T], Failure> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::invalid(format!(
            "{name} is NULL but its length is {n}"
        )));
    }
    // SAFETY: non-NULL with n readable elements by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Writes `bytes` and a NUL into `buf`.
///
/// # Safety
/// `buf` must be non-NULL with `bytes.len() + 1` writable bytes, not overlapping `bytes`.
pub(crate) unsafe fn write_c_str(buf: *mut c_char, bytes: &[u8]) {
    // SAFETY: room for bytes.len() + 1 bytes, distinct from `bytes`, by the caller's contract.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        *buf.add(bytes.len()) = 0;
    }
}
