//! Sampling: the per-request parameters (vLLM's `SamplingParams`, validated) and the CPU
//! sampler that turns one row of logits into the next token.

mod params;
mod sampler;

pub use params::{
    DeviceSampling, MAX_LOGPROBS, SamplingParams, SamplingParamsError, ValidSamplingParams,
};
pub use sampler::{Sample, SamplerState, TokenLogprob, sample, token_logprobs};
