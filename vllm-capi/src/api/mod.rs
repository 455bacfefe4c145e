//! The exported engine functions. Each runs inside the panic boundary (`guarded`), checks
//! every pointer and value with the `args` helpers before acting, records a message for
//! `vllm_last_error` on failure, and leaves the engine unchanged when it fails.

// cbindgen writes the functions in the order it reads these modules, which is the header's
// order: the groups are kept apart so that rustfmt does not sort them.
mod engine;

mod requests;

mod queries;

pub use engine::*;
pub use queries::*;
pub use requests::*;
