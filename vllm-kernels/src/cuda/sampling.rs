//! `sample_tokens` on the GPU (`csrc/sampling/sample_tokens.cu`): greedy or Gumbel-max with
//! temperature, min-p, top-k and top-p per row ([`SampleRowsDev`]), one CTA per row; see
//! [`crate::cpu::sample_tokens`] for the exact rule; and `fill_tokens`
//! (`csrc/sampling/fill_tokens.cu`), which feeds one step's drawn tokens to the next step's inputs
//! on the device.

use super::{DevicePtr, DevicePtrMut, check, ptr, stream_handle};
use crate::args::{FillTokensArgs, SampleArgs};
use crate::error::Result;
use crate::sys;
use cudarc::driver::CudaStream;

/// The per-row sampling parameters on the device: five arrays of `num_rows` entries each, as
/// the launcher takes them (the device form of [`SampleRow`](crate::args::SampleRow)'s fields;
/// a runner packs each into its own section of a pinned input arena).
pub struct SampleRowsDev<'a> {
    pub temperature: &'a dyn DevicePtr<f32>,
    pub min_p: &'a dyn DevicePtr<f32>,
    pub top_k: &'a dyn DevicePtr<i32>,
    pub top_p: &'a dyn DevicePtr<f32>,
    pub seeds: &'a dyn DevicePtr<u64>,
}

/// Device pointers are not printed: the element counts are.
impl std::fmt::Debug for SampleRowsDev<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleRowsDev")
            .field("lens", &self.lens())
            .finish()
    }
}

impl SampleRowsDev<'_> {
    /// The arrays' lengths, named for [`SampleArgs::validate`].
    fn lens(&self) -> [(&'static str, usize); 5] {
        [
            ("temperature", self.temperature.len()),
            ("min_p", self.min_p.len()),
            ("top_k", self.top_k.len()),
            ("top_p", self.top_p.len()),
            ("seeds", self.seeds.len()),
        ]
    }
}

/// One token per row of `logits` into `out[..num_rows]`. Enqueues one kernel and nothing else
/// (no allocation, no host synchronisation), so it can be captured in a CUDA graph.
pub fn sample_tokens(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<i32>,
    logits: &impl DevicePtr<f32>,
    rows: &SampleRowsDev<'_>,
    a: &SampleArgs,
) -> Result<()> {
    a.validate(out.len(), logits.len(), &rows.lens())?;
    stream.context().bind_to_thread()?;
    let (o, _o) = out.device_ptr_mut(stream);
    let (l, _l) = logits.device_ptr(stream);
    let (t, _t) = rows.temperature.device_ptr(stream);
    let (m, _m) = rows.min_p.device_ptr(stream);
    let (tk, _tk) = rows.top_k.device_ptr(stream);
    let (tp, _tp) = rows.top_p.device_ptr(stream);
    let (s, _s) = rows.seeds.device_ptr(stream);
    let p = sys::vllm_sample_tokens_params {
        out: ptr(o) as *mut i32,
        logits: ptr(l) as *const f32,
        temperature: ptr(t) as *const f32,
        min_p: ptr(m) as *const f32,
        top_k: ptr(tk) as *const i32,
        top_p: ptr(tp) as *const f32,
        seeds: ptr(s) as *const u64,
        num_rows: a.num_rows as i64,
        vocab: a.vocab as i64,
        logits_stride: a.logits_stride as i64,
    };
    // SAFETY: the pointers are live device allocations of the validated sizes (num_rows
    // entries for out, temperature, min_p, top_k, top_p and seeds), kept alive and
    // stream-ordered by the guards until the launch is enqueued; `p` outlives the call.
    check("sample_tokens", unsafe {
        sys::vllm_sample_tokens(&p, stream_handle(stream))
    })
}

/// `out[i] = sampled[from[i]]` where `0 <= from[i] < num_sampled`, else `tokens[i]`, for
/// `i < n`. `from` stays on the device and is not checked: an entry out of range keeps the host's
/// id (the CPU reference returns an error instead). One kernel, no allocation, no host
/// synchronisation, so it can be captured in a CUDA graph.
pub fn fill_tokens(
    stream: &CudaStream,
    out: &mut impl DevicePtrMut<i32>,
    tokens: &impl DevicePtr<i32>,
    sampled: &impl DevicePtr<i32>,
    from: &impl DevicePtr<i32>,
    a: &FillTokensArgs,
) -> Result<()> {
    a.validate(out.len(), tokens.len(), sampled.len(), from.len())?;
    stream.context().bind_to_thread()?;
    let (o, _o) = out.device_ptr_mut(stream);
    let (t, _t) = tokens.device_ptr(stream);
    let (s, _s) = sampled.device_ptr(stream);
    let (f, _f) = from.device_ptr(stream);
    let p = sys::vllm_fill_tokens_params {
        out: ptr(o) as *mut i32,
        tokens: ptr(t) as *const i32,
        sampled: ptr(s) as *const i32,
        from: ptr(f) as *const i32,
        n: a.n as i64,
        num_sampled: a.num_sampled as i64,
    };
    // SAFETY: the pointers are live device allocations of the validated lengths (out, tokens
    // and from hold n entries, sampled num_sampled; the kernel reads sampled only at an index
    // it checked), `out` is borrowed mutably so it cannot alias the others, all kept alive and
    // stream-ordered by the guards until the launch is enqueued; `p` outlives the call.
    check("fill_tokens", unsafe {
        sys::vllm_fill_tokens(&p, stream_handle(stream))
    })
}
