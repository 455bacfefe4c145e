//! The device a test case runs on (candle's `test_device!` idea): a case is written once, over
//! host slices, against [`Device`]; [`Cpu`] runs the CPU reference, [`Cuda`] uploads the
//! inputs, launches the kernel and downloads every output, also when the call fails, so "a bad
//! call writes nothing" is checked the same way on both. `test_device!(case)` turns the case
//! `fn case(d: &impl Device)` into a module `case` with the tests `cpu` and `cuda` (the latter
//! prints SKIP and passes where no GPU is usable; it does not exist without feature `cuda`).

use vllm_kernels::Result;
use vllm_kernels::args::*;
use vllm_kernels::cpu::{self, PagedAttentionIo, PrefillAttentionIo};

#[cfg(feature = "cuda")]
mod bounds {
    use vllm_kernels::cuda::{GpuFloat, GpuKvCacheElem};
    /// An element type both devices take.
    pub trait TestFloat: GpuFloat {}
    impl<T: GpuFloat> TestFloat for T {}
    /// A cache element both devices take.
    pub trait TestKv<T>: GpuKvCacheElem<T> {}
    impl<T, C: GpuKvCacheElem<T>> TestKv<T> for C {}
}

#[cfg(not(feature = "cuda"))]
mod bounds {
    use vllm_kernels::{Float, KvCacheElem};
    /// An element type both devices take.
    pub trait TestFloat: Float {}
    impl<T: Float> TestFloat for T {}
    /// A cache element both devices take.
    pub trait TestKv<T>: KvCacheElem<T> {}
    impl<T, C: KvCacheElem<T>> TestKv<T> for C {}
}

pub use bounds::{TestFloat, TestKv};

/// The ops a device-independent case calls, over host slices (outputs written in place).
pub trait Device {
    fn rms_norm<T: TestFloat>(
        &self,
        out: &mut [T],
        x: &[T],
        w: &[T],
        a: &RmsNormArgs,
    ) -> Result<()>;
    fn fused_add_rms_norm<T: TestFloat>(
        &self,
        x: &mut [T],
        residual: &mut [T],
        w: &[T],
        a: &FusedAddRmsNormArgs,
    ) -> Result<()>;
    fn head_rms_norm<T: TestFloat>(&self, x: &mut [T], w: &[T], a: &HeadRmsNormArgs) -> Result<()>;
    fn rotary_embedding<T: TestFloat>(
        &self,
        positions: &[i64],
        qk: (&mut [T], Option<&mut [T]>),
        cos_sin: &[T],
        a: &RotaryArgs,
    ) -> Result<()>;
    fn act_and_mul<T: TestFloat>(&self, out: &mut [T], x: &[T], a: &ActAndMulArgs) -> Result<()>;
    fn reshape_and_cache<T: TestFloat, C: TestKv<T>>(
        &self,
        kv: (&[T], &[T]),
        caches: (&mut [C], &mut [C]),
        slots: &[i64],
        a: &ReshapeAndCacheArgs,
    ) -> Result<()>;
    fn copy_blocks<T: TestFloat>(
        &self,
        caches: &mut [&mut [T]],
        l: &PagedKvLayout,
        pairs: &[BlockPair],
    ) -> Result<()>;
    fn gather_rows<T: TestFloat>(
        &self,
        out: &mut [T],
        table: &[T],
        ids: &[i32],
        a: &GatherRowsArgs,
    ) -> Result<()>;
    fn add_bias<T: TestFloat>(&self, x: &mut [T], bias: &[T], a: &AddBiasArgs) -> Result<()>;
    fn sample_tokens(
        &self,
        out: &mut [i32],
        logits: &[f32],
        rows: &[SampleRow],
        a: &SampleArgs,
    ) -> Result<()>;
    fn fill_tokens(
        &self,
        out: &mut [i32],
        tokens: &[i32],
        sampled_from: (&[i32], &[i32]),
        a: &FillTokensArgs,
    ) -> Result<()>;
    fn paged_attention<T: TestFloat, C: TestKv<T>>(
        &self,
        io: PagedAttentionIo<'_, T, C>,
        a: &PagedAttentionArgs,
    ) -> Result<()>;
    fn prefill_attention<T: TestFloat, C: TestKv<T>>(
        &self,
        io: PrefillAttentionIo<'_, T, C>,
        a: &PrefillAttentionArgs,
    ) -> Result<()>;
    fn skinny_gemm<T: TestFloat, O: TestFloat>(
        &self,
        y: &mut [O],
        x: &[T],
        w: &[T],
        a: &SkinnyGemmArgs,
    ) -> Result<()>;
}

/// The CPU reference.
pub struct Cpu;

impl Device for Cpu {
    fn rms_norm<T: TestFloat>(
        &self,
        out: &mut [T],
        x: &[T],
        w: &[T],
        a: &RmsNormArgs,
    ) -> Result<()> {
        cpu::rms_norm(out, x, w, a)
    }
    fn fused_add_rms_norm<T: TestFloat>(
        &self,
        x: &mut [T],
        residual: &mut [T],
        w: &[T],
        a: &FusedAddRmsNormArgs,
    ) -> Result<()> {
        cpu::fused_add_rms_norm(x, residual, w, a)
    }
    fn head_rms_norm<T: TestFloat>(&self, x: &mut [T], w: &[T], a: &HeadRmsNormArgs) -> Result<()> {
        cpu::head_rms_norm(x, w, a)
    }
    fn rotary_embedding<T: TestFloat>(
        &self,
        positions: &[i64],
        (q, k): (&mut [T], Option<&mut [T]>),
        cos_sin: &[T],
        a: &RotaryArgs,
    ) -> Result<()> {
        cpu::rotary_embedding(positions, q, k, cos_sin, a)
    }
    fn act_and_mul<T: TestFloat>(&self, out: &mut [T], x: &[T], a: &ActAndMulArgs) -> Result<()> {
        cpu::act_and_mul(out, x, a)
    }
    fn reshape_and_cache<T: TestFloat, C: TestKv<T>>(
        &self,
        (k, v): (&[T], &[T]),
        (kc, vc): (&mut [C], &mut [C]),
        slots: &[i64],
        a: &ReshapeAndCacheArgs,
    ) -> Result<()> {
        cpu::reshape_and_cache(k, v, kc, vc, slots, a)
    }
    fn copy_blocks<T: TestFloat>(
        &self,
        caches: &mut [&mut [T]],
        l: &PagedKvLayout,
        pairs: &[BlockPair],
    ) -> Result<()> {
        cpu::copy_blocks(caches, l, pairs)
    }
    fn gather_rows<T: TestFloat>(
        &self,
        out: &mut [T],
        table: &[T],
        ids: &[i32],
        a: &GatherRowsArgs,
    ) -> Result<()> {
        cpu::gather_rows(out, table, ids, a)
    }
    fn add_bias<T: TestFloat>(&self, x: &mut [T], bias: &[T], a: &AddBiasArgs) -> Result<()> {
        cpu::add_bias(x, bias, a)
    }
    fn sample_tokens(
        &self,
        out: &mut [i32],
        logits: &[f32],
        rows: &[SampleRow],
        a: &SampleArgs,
    ) -> Result<()> {
        cpu::sample_tokens(out, logits, rows, a)
    }
    fn fill_tokens(
        &self,
        out: &mut [i32],
        tokens: &[i32],
        (sampled, from): (&[i32], &[i32]),
        a: &FillTokensArgs,
    ) -> Result<()> {
        cpu::fill_tokens(out, tokens, sampled, from, a)
    }
    fn paged_attention<T: TestFloat, C: TestKv<T>>(
        &self,
        io: PagedAttentionIo<'_, T, C>,
        a: &PagedAttentionArgs,
    ) -> Result<()> {
        cpu::paged_attention(io, a)
    }
    fn prefill_attention<T: TestFloat, C: TestKv<T>>(
        &self,
        io: PrefillAttentionIo<'_, T, C>,
        a: &PrefillAttentionArgs,
    ) -> Result<()> {
        cpu::prefill_attention(io, a)
    }
    fn skinny_gemm<T: TestFloat, O: TestFloat>(
        &self,
        y: &mut [O],
        x: &[T],
        w: &[T],
        a: &SkinnyGemmArgs,
    ) -> Result<()> {
        cpu::skinny_gemm(y, x, w, a)
    }
}

#[cfg(feature = "cuda")]
pub use gpu::Cuda;

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use std::sync::Arc;
    use vllm_kernels::cuda::{self, CudaSlice, CudaStream, DeviceRepr};

    /// Device 0's default stream; host slices in, host slices out.
    pub struct Cuda {
        pub s: Arc<CudaStream>,
    }

    impl Cuda {
        /// `None` (after printing SKIP) where no GPU is usable.
        pub fn new(test: &str) -> Option<Self> {
            crate::common::stream(test).map(|s| Self { s })
        }

        fn up<T: DeviceRepr>(&self, x: &[T]) -> CudaSlice<T> {
            self.s.clone_htod(x).unwrap()
        }

        /// Uploads `out`, runs `op` on it, copies it back (also after an error), returns the
        /// op's result.
        fn with_out<T: DeviceRepr + Copy>(
            &self,
            out: &mut [T],
            op: impl FnOnce(&mut CudaSlice<T>) -> Result<()>,
        ) -> Result<()> {
            let mut d = self.up(out);
            let r = op(&mut d);
            self.back(&d, out);
            r
        }

        /// Copies the device buffer back over the host one it was uploaded from.
        fn back<T: DeviceRepr + Copy>(&self, d: &CudaSlice<T>, host: &mut [T]) {
            host.copy_from_slice(&self.s.clone_dtoh(d).unwrap());
        }
    }

    /// Five device columns of the per-row sampling parameters.
    pub struct SampleColumns {
        pub temperature: CudaSlice<f32>,
        pub min_p: CudaSlice<f32>,
        pub top_k: CudaSlice<i32>,
        pub top_p: CudaSlice<f32>,
        pub seeds: CudaSlice<u64>,
    }

    impl SampleColumns {
        /// Splits `rows` into the five arrays the kernel reads and uploads them.
        pub fn up(s: &Arc<CudaStream>, rows: &[SampleRow]) -> Self {
            let col = |f: fn(&SampleRow) -> f32| -> Vec<f32> { rows.iter().map(f).collect() };
            let top_k: Vec<i32> = rows.iter().map(|r| r.top_k).collect();
            let seeds: Vec<u64> = rows.iter().map(|r| r.seed).collect();
            Self {
                temperature: s.clone_htod(&col(|r| r.temperature)).unwrap(),
                min_p: s.clone_htod(&col(|r| r.min_p)).unwrap(),
                top_k: s.clone_htod(&top_k).unwrap(),
                top_p: s.clone_htod(&col(|r| r.top_p)).unwrap(),
                seeds: s.clone_htod(&seeds).unwrap(),
            }
        }

        /// The wrapper's view of the columns.
        pub fn dev(&self) -> cuda::SampleRowsDev<'_> {
            cuda::SampleRowsDev {
                temperature: &self.temperature,
                min_p: &self.min_p,
                top_k: &self.top_k,
                top_p: &self.top_p,
                seeds: &self.seeds,
            }
        }
    }

    impl Device for Cuda {
        fn rms_norm<T: TestFloat>(
            &self,
            out: &mut [T],
            x: &[T],
            w: &[T],
            a: &RmsNormArgs,
        ) -> Result<()> {
            self.with_out(out, |d| {
                cuda::rms_norm(&self.s, d, &self.up(x), &self.up(w), a)
            })
        }
        fn fused_add_rms_norm<T: TestFloat>(
            &self,
            x: &mut [T],
            residual: &mut [T],
            w: &[T],
            a: &FusedAddRmsNormArgs,
        ) -> Result<()> {
            let (mut dx, mut dr) = (self.up(x), self.up(residual));
            let r = cuda::fused_add_rms_norm(&self.s, &mut dx, &mut dr, &self.up(w), a);
            self.back(&dx, x);
            self.back(&dr, residual);
            r
        }
        fn head_rms_norm<T: TestFloat>(
            &self,
            x: &mut [T],
            w: &[T],
            a: &HeadRmsNormArgs,
        ) -> Result<()> {
            let mut dx = self.up(x);
            let r = cuda::head_rms_norm(&self.s, &mut dx, &self.up(w), a);
            self.back(&dx, x);
            r
        }
        fn rotary_embedding<T: TestFloat>(
            &self,
            positions: &[i64],
            (q, k): (&mut [T], Option<&mut [T]>),
            cos_sin: &[T],
            a: &RotaryArgs,
        ) -> Result<()> {
            let (pos, cache, mut dq) = (self.up(positions), self.up(cos_sin), self.up(q));
            let r = match k {
                Some(k) => {
                    let mut dk = self.up(k);
                    let r =
                        cuda::rotary_embedding(&self.s, &pos, &mut dq, Some(&mut dk), &cache, a);
                    self.back(&dk, k);
                    r
                }
                None => cuda::rotary_embedding(
                    &self.s,
                    &pos,
                    &mut dq,
                    None::<&mut CudaSlice<T>>,
                    &cache,
                    a,
                ),
            };
            self.back(&dq, q);
            r
        }
        fn act_and_mul<T: TestFloat>(
            &self,
            out: &mut [T],
            x: &[T],
            a: &ActAndMulArgs,
        ) -> Result<()> {
            self.with_out(out, |d| cuda::act_and_mul(&self.s, d, &self.up(x), a))
        }
        fn reshape_and_cache<T: TestFloat, C: TestKv<T>>(
            &self,
            (k, v): (&[T], &[T]),
            (kc, vc): (&mut [C], &mut [C]),
            slots: &[i64],
            a: &ReshapeAndCacheArgs,
        ) -> Result<()> {
            let (mut dk, mut dv) = (self.up(kc), self.up(vc));
            let (k, v, slots) = (self.up(k), self.up(v), self.up(slots));
            let r = cuda::reshape_and_cache(&self.s, &k, &v, &mut dk, &mut dv, &slots, a);
            self.back(&dk, kc);
            self.back(&dv, vc);
            r
        }
        fn copy_blocks<T: TestFloat>(
            &self,
            caches: &mut [&mut [T]],
            l: &PagedKvLayout,
            pairs: &[BlockPair],
        ) -> Result<()> {
            let mut dev: Vec<CudaSlice<T>> = caches.iter().map(|c| self.up(c)).collect();
            let mut refs: Vec<&mut CudaSlice<T>> = dev.iter_mut().collect();
            let r = cuda::copy_blocks(&self.s, &mut refs, l, pairs);
            for (d, h) in dev.iter().zip(caches.iter_mut()) {
                self.back(d, h);
            }
            r
        }
        fn gather_rows<T: TestFloat>(
            &self,
            out: &mut [T],
            table: &[T],
            ids: &[i32],
            a: &GatherRowsArgs,
        ) -> Result<()> {
            self.with_out(out, |d| {
                cuda::gather_rows(&self.s, d, &self.up(table), &self.up(ids), a)
            })
        }
        fn add_bias<T: TestFloat>(&self, x: &mut [T], bias: &[T], a: &AddBiasArgs) -> Result<()> {
            self.with_out(x, |d| cuda::add_bias(&self.s, d, &self.up(bias), a))
        }
        fn sample_tokens(
            &self,
            out: &mut [i32],
            logits: &[f32],
            rows: &[SampleRow],
            a: &SampleArgs,
        ) -> Result<()> {
            let cols = SampleColumns::up(&self.s, rows);
            self.with_out(out, |d| {
                cuda::sample_tokens(&self.s, d, &self.up(logits), &cols.dev(), a)
            })
        }
        fn fill_tokens(
            &self,
            out: &mut [i32],
            tokens: &[i32],
            (sampled, from): (&[i32], &[i32]),
            a: &FillTokensArgs,
        ) -> Result<()> {
            let (t, s, f) = (self.up(tokens), self.up(sampled), self.up(from));
            self.with_out(out, |d| cuda::fill_tokens(&self.s, d, &t, &s, &f, a))
        }
        fn paged_attention<T: TestFloat, C: TestKv<T>>(
            &self,
            io: PagedAttentionIo<'_, T, C>,
            a: &PagedAttentionArgs,
        ) -> Result<()> {
            let mut out = self.up(io.out);
            let (q, k, v) = (
                self.up(io.query),
                self.up(io.key_cache),
                self.up(io.value_cache),
            );
            let (bt, sl) = (self.up(io.block_tables), self.up(io.seq_lens));
            let alibi = io.alibi_slopes.map(|x| self.up(x));
            let dio = cuda::PagedAttentionIo {
                out: &mut out,
                query: &q,
                key_cache: &k,
                value_cache: &v,
                block_tables: &bt,
                seq_lens: &sl,
                alibi_slopes: alibi.as_ref().map(|x| x as &dyn cuda::DevicePtr<f32>),
            };
            let r = cuda::paged_attention(&self.s, dio, None, a);
            self.back(&out, io.out);
            r
        }
        fn prefill_attention<T: TestFloat, C: TestKv<T>>(
            &self,
            io: PrefillAttentionIo<'_, T, C>,
            a: &PrefillAttentionArgs,
        ) -> Result<()> {
            let mut out = self.up(io.out);
            let (q, k, v) = (
                self.up(io.query),
                self.up(io.key_cache),
                self.up(io.value_cache),
            );
            let (bt, cu, sl) = (
                self.up(io.block_tables),
                self.up(io.cu_query_lens),
                self.up(io.seq_lens),
            );
            let dio = cuda::PrefillAttentionIo {
                out: &mut out,
                query: &q,
                key_cache: &k,
                value_cache: &v,
                block_tables: &bt,
                cu_query_lens: &cu,
                seq_lens: &sl,
            };
            let r = cuda::prefill_attention(&self.s, dio, a);
            self.back(&out, io.out);
            r
        }
        fn skinny_gemm<T: TestFloat, O: TestFloat>(
            &self,
            y: &mut [O],
            x: &[T],
            w: &[T],
            a: &SkinnyGemmArgs,
        ) -> Result<()> {
            self.with_out(y, |d| {
                cuda::skinny_gemm(&self.s, d, &self.up(x), &self.up(w), a)
            })
        }
    }
}

#[cfg(feature = "cuda")]
pub use gpu::SampleColumns;

/// `test_device!(case)`: the module `case` with `#[test] fn cpu()` running `case(&Cpu)` and,
/// with feature `cuda`, `#[test] fn cuda()` running `case(&Cuda)` (SKIP where no GPU).
macro_rules! test_device {
    ($($case:ident),+ $(,)?) => {$(
        mod $case {
            #[test]
            fn cpu() {
                super::$case(&crate::common::device::Cpu);
            }

            #[cfg(feature = "cuda")]
            #[test]
            fn cuda() {
                let name = concat!(stringify!($case), "::cuda");
                if let Some(d) = crate::common::device::Cuda::new(name) {
                    super::$case(&d);
                }
            }
        }
    )+};
}
