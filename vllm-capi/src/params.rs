//! The C parameter structs to the engine's types (engine arguments, sampling parameters, chat
//! messages) and the C defaults from the engine's. Every check names the field and the value
//! it rejects. Cost: O(fields + array lengths).

use crate::args::{slice_arg, str_arg};
use crate::failure::Failure;
use crate::types::{
    VllmChatMessage, VllmDevice, VllmDtype, VllmEngineParams, VllmKvCacheDtype, VllmLoadFormat,
    VllmSamplingParams,
};
use std::collections::HashMap;
use std::path::PathBuf;
use vllm_engine::chat::ChatMessage;
use vllm_engine::engine::{KvCacheDType, ModelDType};
use vllm_engine::{Device, EngineArgs, LoadFormat, SamplingParams};

/// Engine arguments from the C struct (NULL: the defaults).
///
/// # Safety
/// `p` must be NULL or point to a valid `VllmEngineParams`.
pub(crate) unsafe fn engine_args(
    model: &str,
    p: *const VllmEngineParams,
) -> Result<EngineArgs, Failure> {
    let mut a = EngineArgs::new(model);
    if p.is_null() {
        return Ok(a);
    }
    // SAFETY: non-NULL and valid by the caller's contract.
    let p = unsafe { &*p };
    if !p.tokenizer_path.is_null() {
        // SAFETY: non-NULL strings in the struct are NUL-terminated by contract.
        a.tokenizer = Some(PathBuf::from(unsafe {
            str_arg(p.tokenizer_path, "params.tokenizer_path")
        }?));
    }
    use VllmLoadFormat as L;
    a.load_format = enum_field(
        p.load_format,
        "load_format",
        &[
            (L::Auto as u32, LoadFormat::Auto, "auto"),
            (
                L::Safetensors as u32,
                LoadFormat::Safetensors,
                "safetensors",
            ),
            (L::Gguf as u32, LoadFormat::Gguf, "gguf"),
            (L::Dummy as u32, LoadFormat::Dummy, "dummy"),
        ],
    )?;
    let device = enum_field(
        p.device,
        "device",
        &[
            (VllmDevice::Auto as u32, None, "auto"),
            (VllmDevice::Cpu as u32, Some(Device::Cpu), "cpu"),
            (
                VllmDevice::Cuda as u32,
                Some(Device::Cuda { ordinal: 0 }),
                "cuda",
            ),
        ],
    )?;
    a.device = Some(device.unwrap_or_else(Device::best_available));
    let positive = |v: u32, name: &str| {
        if v == 0 {
            Err(Failure::invalid(format!(
                "params.{name} must be > 0, got 0"
            )))
        } else {
            Ok(v as usize)
        }
    };
    a.max_model_len = (p.max_model_len > 0).then_some(p.max_model_len as usize);
    a.max_num_seqs = positive(p.max_num_seqs, "max_num_seqs")?;
    a.max_num_batched_tokens = positive(p.max_num_batched_tokens, "max_num_batched_tokens")?;
    a.block_size = positive(p.block_size, "block_size")?;
    a.num_kv_blocks = (p.num_kv_blocks > 0).then_some(p.num_kv_blocks as usize);
    if p.kv_cache_memory_bytes == 0 && p.num_kv_blocks == 0 {
        return Err(Failure::invalid(
            "params.kv_cache_memory_bytes must be > 0 when num_kv_blocks is 0",
        ));
    }
    a.kv_cache_memory_bytes = p.kv_cache_memory_bytes as usize;
    a.enable_prefix_caching = p.enable_prefix_caching;
    a.enable_chunked_prefill = p.enable_chunked_prefill;
    a.seed = p.seed;
    a.dtype = enum_field(
        p.dtype,
        "dtype",
        &[
            (VllmDtype::Auto as u32, ModelDType::Auto, "auto"),
            (VllmDtype::Bfloat16 as u32, ModelDType::BF16, "bfloat16"),
            (VllmDtype::Float16 as u32, ModelDType::F16, "float16"),
        ],
    )?;
    a.kv_cache_dtype = enum_field(
        p.kv_cache_dtype,
        "kv_cache_dtype",
        &[
            (VllmKvCacheDtype::Auto as u32, KvCacheDType::Auto, "auto"),
            (
                VllmKvCacheDtype::Fp8E4m3 as u32,
                KvCacheDType::Fp8E4m3,
                "fp8_e4m3",
            ),
        ],
    )?;
    let u = p.gpu_memory_utilization;
    if !(u > 0.0 && u <= 1.0) {
        return Err(Failure::invalid(format!(
            "params.gpu_memory_utilization must be in (0, 1], got {u}"
        )));
    }
    a.gpu_memory_utilization = u;
    a.enforce_eager = p.enforce_eager;
    a.async_scheduling = p.async_scheduling;
    Ok(a)
}

/// The Rust value of the C enum field `field` = `v`, from `table` rows of (C value, Rust value,
/// name); an error listing the supported values otherwise.
fn enum_field<T: Copy>(v: u32, field: &str, table: &[(u32, T, &str)]) -> Result<T, Failure> {
    table.iter().find(|e| e.0 == v).map(|e| e.1).ok_or_else(|| {
        let supported: Vec<String> = table.iter().map(|e| format!("{} ({})", e.0, e.2)).collect();
        Failure::invalid(format!(
            "params.{field} {v}; supported: {}",
            supported.join(", ")
        ))
    })
}

/// The C defaults, from the engine's.
pub(crate) fn default_engine_params() -> VllmEngineParams {
    let a = EngineArgs::default();
    VllmEngineParams {
        tokenizer_path: std::ptr::null(),
        load_format: VllmLoadFormat::Auto as u32,
        device: VllmDevice::Auto as u32,
        max_model_len: 0,
        max_num_seqs: a.max_num_seqs as u32,
        max_num_batched_tokens: a.max_num_batched_tokens as u32,
        block_size: a.block_size as u32,
        num_kv_blocks: 0,
        kv_cache_memory_bytes: a.kv_cache_memory_bytes as u64,
        enable_prefix_caching: a.enable_prefix_caching,
        enable_chunked_prefill: a.enable_chunked_prefill,
        seed: a.seed,
        dtype: VllmDtype::Auto as u32,
        kv_cache_dtype: VllmKvCacheDtype::Auto as u32,
        gpu_memory_utilization: a.gpu_memory_utilization,
        enforce_eager: a.enforce_eager,
        async_scheduling: a.async_scheduling,
    }
}

/// vLLM's defaults as the C struct.
pub(crate) fn default_sampling_params() -> VllmSamplingParams {
    let d = SamplingParams::default();
    VllmSamplingParams {
        n: d.n as u32,
        temperature: d.temperature,
        top_p: d.top_p,
        top_k: d.top_k,
        min_p: d.min_p,
        presence_penalty: d.presence_penalty,
        frequency_penalty: d.frequency_penalty,
        repetition_penalty: d.repetition_penalty,
        use_seed: false,
        seed: 0,
        stop: std::ptr::null(),
        num_stop: 0,
        stop_token_ids: std::ptr::null(),
        num_stop_token_ids: 0,
        include_stop_str_in_output: d.include_stop_str_in_output,
        ignore_eos: d.ignore_eos,
        max_tokens: d.max_tokens.unwrap_or(0) as u32,
        min_tokens: d.min_tokens as u32,
        logprobs: -1,
        prompt_logprobs: -1,
        logit_bias_token_ids: std::ptr::null(),
        logit_bias_values: std::ptr::null(),
        num_logit_bias: 0,
        skip_special_tokens: d.skip_special_tokens,
    }
}

/// Sampling parameters from the C struct (NULL: vLLM's defaults). Range checks are the
/// engine's (`SamplingParams::validate`, at submission).
///
/// # Safety
/// `p` must be NULL or point to a valid `VllmSamplingParams` whose arrays match their lengths.
pub(crate) unsafe fn sampling_params(
    p: *const VllmSamplingParams,
) -> Result<SamplingParams, Failure> {
    if p.is_null() {
        return Ok(SamplingParams::default());
    }
    // SAFETY: non-NULL and valid by the caller's contract.
    let p = unsafe { &*p };
    // SAFETY: an array of num_stop pointers by the caller's contract.
    let stops = unsafe { slice_arg(p.stop, p.num_stop, "params.stop") }?;
    let stop = stops
        .iter()
        .enumerate()
        // SAFETY: each entry is a NUL-terminated string by contract (NULL is rejected).
        .map(|(i, &s)| unsafe { str_arg(s, &format!("params.stop[{i}]")) }.map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    // SAFETY: an array of num_stop_token_ids ids by the caller's contract.
    let stop_token_ids = unsafe {
        slice_arg(
            p.stop_token_ids,
            p.num_stop_token_ids,
            "params.stop_token_ids",
        )
    }?
    .to_vec();
    // SAFETY: an array of num_logit_bias ids by the caller's contract.
    let bias_ids = unsafe {
        slice_arg(
            p.logit_bias_token_ids,
            p.num_logit_bias,
            "params.logit_bias_token_ids",
        )
    }?;
    // SAFETY: as above.
    let bias_vals = unsafe {
        slice_arg(
            p.logit_bias_values,
            p.num_logit_bias,
            "params.logit_bias_values",
        )
    }?;
    let logit_bias: HashMap<u32, f32> = bias_ids
        .iter()
        .copied()
        .zip(bias_vals.iter().copied())
        .collect();
    let opt_k = |v: i32, name: &str| -> Result<Option<usize>, Failure> {
        match v {
            -1 => Ok(None),
            v if v >= 0 => Ok(Some(v as usize)),
            v => Err(Failure::invalid(format!(
                "params.{name} must be -1 (off) or >= 0, got {v}"
            ))),
        }
    };
    Ok(SamplingParams {
        n: p.n as usize,
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        min_p: p.min_p,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        repetition_penalty: p.repetition_penalty,
        seed: p.use_seed.then_some(p.seed),
        stop,
        stop_token_ids,
        include_stop_str_in_output: p.include_stop_str_in_output,
        ignore_eos: p.ignore_eos,
        max_tokens: (p.max_tokens > 0).then_some(p.max_tokens as usize),
        min_tokens: p.min_tokens as usize,
        logprobs: opt_k(p.logprobs, "logprobs")?,
        prompt_logprobs: opt_k(p.prompt_logprobs, "prompt_logprobs")?,
        logit_bias,
        skip_special_tokens: p.skip_special_tokens,
    })
}

/// Chat messages from a C array.
///
/// # Safety
/// `msgs` must be NULL or point to `n` messages whose strings are NUL-terminated.
pub(crate) unsafe fn chat_messages(
    msgs: *const VllmChatMessage,
    n: usize,
) -> Result<Vec<ChatMessage>, Failure> {
    if n == 0 {
        return Err(Failure::invalid("messages is empty (num_messages 0)"));
    }
    // SAFETY: by the caller's contract.
    let msgs = unsafe { slice_arg(msgs, n, "messages") }?;
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            // SAFETY: strings in the messages are NUL-terminated by contract.
            let role = unsafe { str_arg(m.role, &format!("messages[{i}].role")) }?;
            // SAFETY: as above.
            let content = unsafe { str_arg(m.content, &format!("messages[{i}].content")) }?;
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}
