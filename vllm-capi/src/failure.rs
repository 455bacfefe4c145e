//! [`Failure`]: what a failing export returns (a status and the message for
//! `vllm_last_error`), and the mapping of the engine's typed errors onto the C statuses.

use crate::error::{VllmStatus, fail};
use vllm_engine::EngineError;
use vllm_engine::scheduler::ScheduleError;
use vllm_engine::serving::ServingError;

/// The message of a call refused inside an output callback.
pub(crate) const REENTRANT: &str = "called from an output callback (the engine thread); only vllm_tokenize and vllm_detokenize may be";

/// A failed call: its status and a message naming the argument, limit and value.
#[derive(Debug)]
pub(crate) struct Failure {
    status: VllmStatus,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: VllmStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// An INVALID_ARGUMENT failure.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(VllmStatus::InvalidArgument, message)
    }

    /// Stores the message as this thread's last error; the status.
    pub(crate) fn record(self) -> VllmStatus {
        fail(self.status, self.message)
    }
}

/// The status of an engine error.
fn status_of(e: &EngineError) -> VllmStatus {
    match e {
        EngineError::Params(_)
        | EngineError::Args(_)
        | EngineError::BadArgs(_)
        | EngineError::Tokenize(_) => VllmStatus::InvalidArgument,
        EngineError::Chat(_) | EngineError::NoTokenizer => VllmStatus::InvalidArgument,
        EngineError::Schedule(ScheduleError::EmptyPrompt { .. }) => VllmStatus::InvalidArgument,
        EngineError::Schedule(_) => VllmStatus::Rejected,
        EngineError::Load(_) | EngineError::Kv(_) => VllmStatus::LoadFailed,
        EngineError::Unsupported { .. } | EngineError::Device(_) => VllmStatus::Unsupported,
        EngineError::Runner(_) => VllmStatus::Internal,
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Self::new(status_of(&e), e.to_string())
    }
}

impl From<ServingError> for Failure {
    fn from(e: ServingError) -> Self {
        match e {
            ServingError::Engine(e) => e.into(),
            ServingError::UnknownRequest { .. } => Self::new(VllmStatus::NotFound, e.to_string()),
            ServingError::Stopped(why) => Self::new(VllmStatus::EngineStopped, why),
            ServingError::Reentrant => Self::new(VllmStatus::Reentrant, REENTRANT),
            ServingError::Spawn(_) | ServingError::Panicked(_) => {
                Self::new(VllmStatus::Internal, e.to_string())
            }
        }
    }
}
