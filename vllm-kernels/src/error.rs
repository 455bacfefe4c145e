//! The one error type of vllm-kernels: every wrapper validates its arguments into one of these
//! before anything reaches the GPU.

use crate::dtype::DType;

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A value outside the set the op was compiled for (dtype, head size, block size, ...).
    #[error("{op}: unsupported {what} {value}; supported: {supported}")]
    Unsupported {
        op: &'static str,
        what: &'static str,
        value: String,
        supported: String,
    },
    /// A buffer holds fewer elements than the shape and strides given need.
    #[error("{op}: `{name}` has {len} elements but the shape needs {need}")]
    BufferTooSmall {
        op: &'static str,
        name: &'static str,
        len: usize,
        need: usize,
    },
    /// Two sizes that must agree do not.
    #[error("{op}: {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        op: &'static str,
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A row stride shorter than the row, so rows would overlap.
    #[error("{op}: stride of `{name}` is {stride} elements, less than its row length {row_len}")]
    BadStride {
        op: &'static str,
        name: &'static str,
        stride: usize,
        row_len: usize,
    },
    /// An index (position, slot, block number) outside its range.
    #[error("{op}: {what} {value} out of range 0..{limit}")]
    OutOfRange {
        op: &'static str,
        what: &'static str,
        value: i64,
        limit: usize,
    },
    /// Any other invalid argument, with the reason.
    #[error("{op}: {reason}")]
    InvalidArgument { op: &'static str, reason: String },
    /// The launcher refused the call (a wrapper bug if it happens: wrappers validate first).
    #[error("{op}: launcher returned status {status}")]
    Launcher { op: &'static str, status: u32 },
    /// A CUDA runtime error raised by a launch.
    #[error("{op}: CUDA error {code}: {message}")]
    Cuda {
        op: &'static str,
        code: i32,
        message: String,
    },
    /// A CUDA driver error from cudarc (allocation, copy, event, context).
    #[cfg(feature = "cuda")]
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
}

impl KernelError {
    pub(crate) fn unsupported_dtype(op: &'static str, dtype: DType, supported: &[DType]) -> Self {
        KernelError::Unsupported {
            op,
            what: "dtype",
            value: dtype.to_string(),
            supported: list(supported),
        }
    }

    pub(crate) fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        KernelError::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }
}

/// "a, b, c" for an error message.
pub(crate) fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
