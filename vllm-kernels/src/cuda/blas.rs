//! Dense matrix products through cuBLAS (`cublasGemmEx`, loaded at run time by cudarc).
//!
//! The model runner's products are all `Y[m, n] = X[m, k] W[n, k]^T` with row-major X, W and
//! Y (W as the checkpoint stores it, `[out_features, in_features]`). cuBLAS is column-major,
//! so this is `Y^T = W X^T`: `transa = T` over W (ld k), `transb = N` over X (ld k), C = Y^T
//! (ld = Y's row stride). 16-bit inputs accumulate in f32 (`CUBLAS_COMPUTE_32F`, tensor cores);
//! the output may be 16-bit or f32 (the LM head writes f32 logits). A fixed workspace is set
//! on the handle so that captured CUDA graphs never allocate. Cost: 2 m n k flops.

use super::blas_lt::{LtAlgo, LtHandle, LtOperands, LtPlan};
use super::{DevicePtr, DevicePtrMut, GpuFloat};
use crate::args::{MatmulArgs, SKINNY_GEMM_MAX_M, SkinnyGemmArgs, Sm90GemmArgs};
use crate::dtype::DType;
use crate::error::{KernelError, Result};
use cudarc::cublas::{CudaBlas, result as blas_result, sys as blas_sys};
use cudarc::driver::{CudaSlice, CudaStream};
use std::collections::HashMap;
use std::sync::Arc;

/// Workspace handed to cuBLAS once (its recommended size for Hopper).
const WORKSPACE_BYTES: usize = 32 << 20;

/// A cuBLAS handle bound to one stream, with its own workspace, the weight shapes whose
/// 1-4 row products go to [`skinny_gemm`](super::skinny_gemm) instead (chosen by measuring
/// both: [`Blas::tune_skinny`]), the product shapes that run a measured cuBLASLt
/// algorithm ([`Blas::tune_lt`]), and those that run the Hopper product
/// [`sm90_gemm`](super::sm90_gemm) with a measured token tile ([`Blas::tune_sm90`]).
#[derive(Debug)]
pub struct Blas {
    blas: CudaBlas,
    stream: Arc<CudaStream>,
    workspace: CudaSlice<u8>,
    /// Weight shape -> preload flag of the skinny_gemm variant chosen for it.
    skinny: HashMap<(usize, usize), bool>,
    lt: Option<LtHandle>,
    /// (m, n, k, input, output type) -> cuBLASLt plan (row stride n).
    plans: HashMap<(usize, usize, usize, DType, DType), LtPlan>,
    /// (m, n, k, type) -> token tile of sm90_gemm (output of the input type, any row stride
    /// that is a multiple of 8).
    sm90: HashMap<(usize, usize, usize, DType), usize>,
}

fn data_type(d: DType) -> blas_sys::cudaDataType {
    match d {
        DType::F32 => blas_sys::cudaDataType::CUDA_R_32F,
        DType::F16 => blas_sys::cudaDataType::CUDA_R_16F,
        DType::BF16 => blas_sys::cudaDataType::CUDA_R_16BF,
    }
}

fn blas_err(e: blas_result::CublasError) -> KernelError {
    KernelError::invalid("cublas", e.to_string())
}

impl Blas {
    /// A handle on `stream` with a workspace of its own.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        let blas = CudaBlas::new(stream.clone()).map_err(blas_err)?;
        let workspace = stream.alloc_zeros::<u8>(WORKSPACE_BYTES)?;
        {
            let (w, _g) = workspace.device_ptr(&stream);
            // SAFETY: the handle is live; the workspace is a device allocation of
            // WORKSPACE_BYTES that this struct keeps alive as long as the handle.
            unsafe {
                blas_sys::cublasSetWorkspace_v2(
                    *blas.handle(),
                    w as usize as *mut std::ffi::c_void,
                    WORKSPACE_BYTES,
                )
            }
            .result()
            .map_err(blas_err)?;
        }
        Ok(Self {
            blas,
            stream,
            workspace,
            skinny: HashMap::new(),
            lt: None,
            plans: HashMap::new(),
            sm90: HashMap::new(),
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// `out[r, :n] = x[r, :k] . w[:n, :k]^T` for `r < m`, rows of `out` `a.ldy` apart
    /// (`x` and `w` contiguous). Inputs `T`, output `O` (`T` or f32).
    pub fn matmul_bt<T: GpuFloat, O: GpuFloat>(
        &self,
        out: &mut impl DevicePtrMut<O>,
        x: &impl DevicePtr<T>,
        w: &impl DevicePtr<T>,
        a: &MatmulArgs,
    ) -> Result<()> {
        const OP: &str = "matmul_bt";
        a.validate(T::DTYPE, O::DTYPE, out.len(), x.len(), w.len())?;
        let MatmulArgs {
            m,
            n,
            k,
            ldy: out_stride,
        } = *a;
        if m == 0 || n == 0 {
            return Ok(());
        }
        if m <= SKINNY_GEMM_MAX_M
            && let Some(&preload) = self.skinny.get(&(n, k))
        {
            let mut a = SkinnyGemmArgs::new(m, n, k);
            a.ldy = out_stride;
            a.preload = preload;
            return super::skinny_gemm(&self.stream, out, x, w, &a);
        }
        let int = |v: usize, what: &'static str| {
            i32::try_from(v).map_err(|_| KernelError::OutOfRange {
                op: OP,
                what,
                value: v as i64,
                limit: i32::MAX as usize,
            })
        };
        let (mi, ni, ki, ldc) = (
            int(m, "m")?,
            int(n, "n")?,
            int(k, "k")?,
            int(out_stride, "ldc")?,
        );
        let (alpha, beta) = (1.0f32, 0.0f32);
        let out_len = out.len();
        let s = &self.stream;
        let (o, _o) = out.device_ptr_mut(s);
        let (xp, _x) = x.device_ptr(s);
        let (wp, _w) = w.device_ptr(s);
        if T::DTYPE == O::DTYPE
            && out_stride.is_multiple_of(8)
            && (o | xp | wp) % 16 == 0
            && let Some(&tile_n) = self.sm90.get(&(m, n, k, T::DTYPE))
        {
            let mut a = Sm90GemmArgs::new(m, n, k);
            a.ldy = out_stride;
            a.tile_n = tile_n;
            a.validate(T::DTYPE, out_len, x.len(), w.len())?;
            let (ws, _ws) = self.workspace.device_ptr(s);
            // SAFETY: arguments validated against the buffers' lengths, pointers 16-byte
            // aligned (checked), guards held until the launch is enqueued on `self.stream`,
            // which also orders every use of the shared workspace.
            return unsafe {
                super::gemm::sm90_gemm_raw::<T>(s, (o, xp, wp), (ws, WORKSPACE_BYTES), &a)
            };
        }
        // The plans were chosen for 256-byte aligned operands (whole allocations); a view at
        // another offset goes to cublasGemmEx.
        if out_stride == n
            && (o | xp | wp) % 256 == 0
            && let (Some(plan), Some(lt)) = (
                self.plans.get(&(m, n, k, T::DTYPE, O::DTYPE)),
                self.lt.as_ref(),
            )
        {
            let (ws, _ws) = self.workspace.device_ptr(s);
            // SAFETY: the plan was built for exactly this shape and these types (checked sizes
            // above, row stride n); the workspace is ours, WORKSPACE_BYTES long; everything is
            // ordered on `self.stream` by the guards.
            return unsafe {
                plan.run(
                    lt,
                    LtOperands {
                        y: o as usize as *mut std::ffi::c_void,
                        x: xp as usize as *const std::ffi::c_void,
                        w: wp as usize as *const std::ffi::c_void,
                    },
                    (ws as usize as *mut std::ffi::c_void, WORKSPACE_BYTES),
                    s.cu_stream() as _,
                )
            };
        }
        // SAFETY: the three pointers are live device allocations at least as long as the
        // shapes above need (checked), kept alive by their guards until the call is enqueued;
        // alpha / beta are host f32 as CUBLAS_COMPUTE_32F expects; the handle is bound to
        // `self.stream`, the stream the guards ordered the buffers on.
        unsafe {
            blas_result::gemm_ex(
                *self.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                ni,
                mi,
                ki,
                (&alpha as *const f32).cast(),
                wp as usize as *const std::ffi::c_void,
                data_type(T::DTYPE),
                ki,
                xp as usize as *const std::ffi::c_void,
                data_type(T::DTYPE),
                ki,
                (&beta as *const f32).cast(),
                o as usize as *mut std::ffi::c_void,
                data_type(O::DTYPE),
                ldc,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(blas_err)
    }

    /// Routes products of shape (m, n, k), inputs `T`, output `O`, row stride n, to the
    /// `index`-th algorithm the cuBLASLt heuristic offers (`None`: back to `cublasGemmEx`).
    /// Returns the number of candidates (0 when the index is out of range: nothing routed).
    pub fn route_lt<T: GpuFloat, O: GpuFloat>(
        &mut self,
        (m, n, k): (usize, usize, usize),
        index: Option<usize>,
    ) -> Result<usize> {
        let key = (m, n, k, T::DTYPE, O::DTYPE);
        self.plans.remove(&key);
        let Some(index) = index else {
            return Ok(0);
        };
        let algos = self.install_lt::<T, O>((m, n, k))?;
        match (algos.get(index), self.plans.get_mut(&key)) {
            (Some(&algo), Some(plan)) => {
                plan.algo = algo;
                Ok(algos.len())
            }
            _ => {
                self.plans.remove(&key);
                Ok(0)
            }
        }
    }

    /// Routes products of shape (m, n, k) with inputs and output `T` to
    /// [`sm90_gemm`](super::sm90_gemm) with token tile `tile_n` (`None`: back to cuBLAS).
    /// Refuses a tile that is not compiled, a device or build without the Hopper products,
    /// and a shape whose workspace exceeds the handle's.
    pub fn route_sm90<T: GpuFloat>(
        &mut self,
        (m, n, k): (usize, usize, usize),
        tile_n: Option<usize>,
    ) -> Result<()> {
        let key = (m, n, k, T::DTYPE);
        self.sm90.remove(&key);
        let Some(tile_n) = tile_n else {
            return Ok(());
        };
        let mut a = Sm90GemmArgs::new(m, n, k);
        a.tile_n = tile_n;
        let need = super::sm90_gemm_workspace::<T>(&a)?;
        if need > WORKSPACE_BYTES {
            return Err(KernelError::OutOfRange {
                op: "sm90_gemm",
                what: "workspace bytes",
                value: need as i64,
                limit: WORKSPACE_BYTES,
            });
        }
        self.sm90.insert(key, tile_n);
        Ok(())
    }

    /// The token tile products of shape (m, n, k) with inputs and output `T` run with on
    /// [`sm90_gemm`](super::sm90_gemm), if they are routed there.
    pub fn sm90_tile<T: GpuFloat>(&self, (m, n, k): (usize, usize, usize)) -> Option<usize> {
        self.sm90.get(&(m, n, k, T::DTYPE)).copied()
    }

    /// Builds the plan of shape (m, n, k) (row stride n) with the heuristic's first candidate
    /// and routes the shape to it; returns every candidate (none: nothing routed).
    fn install_lt<T: GpuFloat, O: GpuFloat>(
        &mut self,
        (m, n, k): (usize, usize, usize),
    ) -> Result<Vec<LtAlgo>> {
        if self.lt.is_none() {
            self.lt = Some(LtHandle::new()?);
        }
        // Set just above; an empty list means nothing routed.
        let Some(lt) = self.lt.as_ref() else {
            return Ok(Vec::new());
        };
        let (plan, algos) = LtPlan::new(lt, (m, n, k, n), T::DTYPE, O::DTYPE, WORKSPACE_BYTES)?;
        if !algos.is_empty() {
            self.plans.insert((m, n, k, T::DTYPE, O::DTYPE), plan);
        }
        Ok(algos)
    }

    /// Times `cublasGemmEx` against each cuBLASLt heuristic candidate for `m` rows times each
    /// of `ws` (all `[n, k]`, every layer's matrix of one kind so the passes stream from
    /// memory) with output type `O`, and keeps the fastest candidate for this shape when it
    /// beats `cublasGemmEx` by more than 2%. Returns (cublasGemmEx us, best candidate us), or
    /// `None` when the scratch `x` (`>= m * k`) or `y` (`>= m * n`) is too small or the shape
    /// is skinny_gemm's.
    pub fn tune_lt<T: GpuFloat, O: GpuFloat>(
        &mut self,
        ws: &[&CudaSlice<T>],
        (m, n, k): (usize, usize, usize),
        x: &CudaSlice<T>,
        y: &mut CudaSlice<O>,
    ) -> Result<Option<(f64, f64)>> {
        let skinny = m <= SKINNY_GEMM_MAX_M && self.skinny.contains_key(&(n, k));
        if ws.is_empty() || m == 0 || skinny || x.len() < m * k || y.len() < m * n {
            return Ok(None);
        }
        let time = |this: &Self, y: &mut CudaSlice<O>| this.time_passes(ws, (m, n, k), x, y);
        let key = (m, n, k, T::DTYPE, O::DTYPE);
        self.plans.remove(&key);
        let gemm_ex = time(self, y)?;
        // One plan, its algorithm switched per candidate (one heuristic query per shape).
        let algos = self.install_lt::<T, O>((m, n, k))?;
        let mut best: Option<(f64, LtAlgo)> = None;
        for &algo in &algos {
            if let Some(plan) = self.plans.get_mut(&key) {
                plan.algo = algo;
            }
            // A candidate the library refuses at run time is skipped, not fatal.
            if let Ok(us) = time(self, y)
                && best.is_none_or(|(b, _)| us < b)
            {
                best = Some((us, algo));
            }
        }
        let best_us = best.map_or(f64::INFINITY, |(us, _)| us);
        match (best, self.plans.get_mut(&key)) {
            (Some((us, algo)), Some(plan)) if us < gemm_ex * 0.98 => plan.algo = algo,
            _ => {
                self.plans.remove(&key);
            }
        }
        Ok(Some((gemm_ex, best_us)))
    }

    /// Times the current route of products of `m` rows times each of `ws` (all `[n, k]`,
    /// every layer's matrix of one kind, so the passes stream from memory; output `T`, row
    /// stride n) against [`sm90_gemm`](super::sm90_gemm) with the token tile covering `m`
    /// and, above 16 rows, the one covering `ceil(m / 2)` (two or more token tiles), and routes the
    /// shape to the fastest tile when it beats the current route by more than 2%. Returns
    /// (current us, best sm90 us, its tile), or `None` when the device or build has no sm90
    /// products, the shape does not fit them or the scratch `x` (`>= m * k`) / `y`
    /// (`>= m * n`) is too small.
    pub fn tune_sm90<T: GpuFloat>(
        &mut self,
        ws: &[&CudaSlice<T>],
        (m, n, k): (usize, usize, usize),
        x: &CudaSlice<T>,
        y: &mut CudaSlice<T>,
    ) -> Result<Option<(f64, f64, usize)>> {
        let key = (m, n, k, T::DTYPE);
        self.sm90.remove(&key);
        let skinny = m <= SKINNY_GEMM_MAX_M && self.skinny.contains_key(&(n, k));
        if ws.is_empty()
            || m == 0
            || skinny
            || x.len() < m * k
            || y.len() < m * n
            || !super::sm90_gemm_available()
        {
            return Ok(None);
        }
        let mut tiles = vec![Sm90GemmArgs::covering_tile(m)];
        let half = Sm90GemmArgs::covering_tile(m.div_ceil(2));
        if m > 16 && half < tiles[0] {
            tiles.push(half);
        }
        let mut fits = Vec::new();
        for t in tiles {
            let mut a = Sm90GemmArgs::new(m, n, k);
            a.tile_n = t;
            // A shape the kernel does not take (n or k off a multiple of 8, ...) stays on the
            // current route.
            match super::sm90_gemm_workspace::<T>(&a) {
                Ok(b) if b <= WORKSPACE_BYTES => fits.push(t),
                Ok(_) | Err(KernelError::Launcher { .. } | KernelError::Unsupported { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if fits.is_empty() {
            return Ok(None);
        }
        let time = |this: &Self, y: &mut CudaSlice<T>| this.time_passes(ws, (m, n, k), x, y);
        let current = time(self, y)?;
        let mut best: Option<(f64, usize)> = None;
        for t in fits {
            self.sm90.insert(key, t);
            let us = time(self, y);
            self.sm90.remove(&key);
            let us = us?;
            if best.is_none_or(|(b, _)| us < b) {
                best = Some((us, t));
            }
        }
        let Some((best_us, tile)) = best else {
            return Ok(None);
        };
        if best_us < current * 0.98 {
            self.sm90.insert(key, tile);
        }
        Ok(Some((current, best_us, tile)))
    }

    /// Microseconds of one product of `m` rows through the current route, timed over 2
    /// passes across every matrix of `ws` (after one untimed pass).
    fn time_passes<T: GpuFloat, O: GpuFloat>(
        &self,
        ws: &[&CudaSlice<T>],
        (m, n, k): (usize, usize, usize),
        x: &CudaSlice<T>,
        y: &mut CudaSlice<O>,
    ) -> Result<f64> {
        let ctx = self.stream.context().clone();
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let (start, end) = (ctx.new_event(flags)?, ctx.new_event(flags)?);
        let reps = 2;
        let mut ys = y.slice_mut(0..m * n);
        let a = MatmulArgs::new(m, n, k);
        for w in ws {
            self.matmul_bt::<T, O>(&mut ys, x, *w, &a)?;
        }
        start.record(&self.stream)?;
        for _ in 0..reps {
            for w in ws {
                self.matmul_bt::<T, O>(&mut ys, x, *w, &a)?;
            }
        }
        end.record(&self.stream)?;
        end.synchronize()?;
        Ok(f64::from(start.elapsed_ms(&end)?) * 1e3 / (reps * ws.len()) as f64)
    }

    /// Times `skinny_gemm` against cuBLAS for one row times each of `ws` (all `[n, k]`, e.g. every
    /// layer's matrix of one kind, so the passes stream from memory rather than L2) and routes
    /// products of up to 4 rows with this shape to the faster; returns (cuBLAS us, best skinny us,
    /// preload) per product. Uses `x` (`>= k`) and `y` (`>= n` f32) as scratch. Shapes skinny_gemm
    /// cannot take stay on cuBLAS (returned as `None`).
    pub fn tune_skinny<T: GpuFloat>(
        &mut self,
        ws: &[&CudaSlice<T>],
        n: usize,
        k: usize,
        x: &CudaSlice<T>,
        y: &mut CudaSlice<f32>,
    ) -> Result<Option<(f64, f64, bool)>> {
        if T::DTYPE == DType::F32 || !k.is_multiple_of(8) || k > crate::args::SKINNY_GEMM_MAX_K {
            return Ok(None);
        }
        let ctx = self.stream.context().clone();
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let (start, end) = (ctx.new_event(flags)?, ctx.new_event(flags)?);
        let reps = 3;
        if ws.is_empty() {
            return Ok(None);
        }
        let mut time = |skinny: Option<bool>, this: &mut Self| -> Result<f64> {
            match skinny {
                Some(preload) => this.skinny.insert((n, k), preload),
                None => this.skinny.remove(&(n, k)),
            };
            let mut ys = y.slice_mut(0..n);
            let a = MatmulArgs::new(1, n, k);
            for w in ws {
                this.matmul_bt::<T, f32>(&mut ys, x, *w, &a)?;
            }
            start.record(&this.stream)?;
            for _ in 0..reps {
                for w in ws {
                    this.matmul_bt::<T, f32>(&mut ys, x, *w, &a)?;
                }
            }
            end.record(&this.stream)?;
            end.synchronize()?;
            Ok(f64::from(start.elapsed_ms(&end)?) * 1e3 / (reps * ws.len()) as f64)
        };
        let cublas = time(None, self)?;
        let plain = time(Some(false), self)?;
        let pre = time(Some(true), self)?;
        let (skinny, preload) = if pre < plain {
            (pre, true)
        } else {
            (plain, false)
        };
        if skinny < cublas {
            self.skinny.insert((n, k), preload);
        } else {
            self.skinny.remove(&(n, k));
        }
        Ok(Some((cublas, skinny, preload)))
    }
}
