//! cuBLASLt products with an algorithm chosen by measurement, for fixed shapes.
//!
//! `cublasGemmEx` takes cuBLAS's first heuristic choice. At the batch sizes of decode steps
//! (8 to 256 rows against a large weight) the product sits between the bandwidth and the
//! tensor-core ceilings, where the first choice is not always the fastest. A [`LtPlan`] is one
//! product shape `Y[m, n] = X[m, k] W[n, k]^T` (the layout of [`super::Blas::matmul_bt`]) with its
//! descriptors and one algorithm; [`super::Blas::tune_lt`] asks the heuristic for up to
//! [`CANDIDATES`] algorithms, times each against `cublasGemmEx` on the model's own weights and
//! keeps the fastest when it wins. Cost: the product's, plus descriptor lookups on the host.

use crate::dtype::DType;
use crate::error::{KernelError, Result};
use cudarc::cublaslt::{result as lt, sys};
use std::ffi::c_void;

/// One cuBLASLt algorithm (an opaque 64-byte description).
pub type LtAlgo = sys::cublasLtMatmulAlgo_t;

/// Algorithms asked of the heuristic per shape.
pub const CANDIDATES: usize = 8;

fn lt_err(e: cudarc::cublaslt::result::CublasError) -> KernelError {
    KernelError::invalid("cublasLt", e.to_string())
}

fn data_type(d: DType) -> sys::cudaDataType {
    match d {
        DType::F32 => sys::cudaDataType::CUDA_R_32F,
        DType::F16 => sys::cudaDataType::CUDA_R_16F,
        DType::BF16 => sys::cudaDataType::CUDA_R_16BF,
    }
}

/// A cuBLASLt handle (destroyed on drop).
#[derive(Debug)]
pub struct LtHandle(sys::cublasLtHandle_t);

impl LtHandle {
    pub fn new() -> Result<Self> {
        Ok(Self(lt::create_handle().map_err(lt_err)?))
    }
}

impl Drop for LtHandle {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `new` and is destroyed once, here; every plan
        // using it is owned by the same `Blas` and used on its stream only.
        let _ = unsafe { lt::destroy_handle(self.0) };
    }
}

// SAFETY: a cuBLASLt handle may be used from any thread, one call at a time; `Blas` owns it
// and takes `&mut self` or runs on its one stream.
unsafe impl Send for LtHandle {}
// SAFETY: shared references only pass the handle to cublasLt calls that `Blas` serialises on
// its stream; nothing mutates the handle through `&self`.
unsafe impl Sync for LtHandle {}

/// The device operands of one product: `y = x w^T`.
#[derive(Debug, Clone, Copy)]
pub struct LtOperands {
    pub y: *mut c_void,
    pub x: *const c_void,
    pub w: *const c_void,
}

/// Descriptors of one product shape and the algorithm it runs with.
#[derive(Debug)]
pub struct LtPlan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    pub algo: sys::cublasLtMatmulAlgo_t,
}

// SAFETY: the descriptors are plain host objects, only read by cublasLtMatmul after creation.
unsafe impl Send for LtPlan {}
// SAFETY: as above: through `&self` the descriptors are only read.
unsafe impl Sync for LtPlan {}

impl Drop for LtPlan {
    fn drop(&mut self) {
        // SAFETY: each non-null descriptor was created in `LtPlan::new` and is destroyed once,
        // here (null: its creation failed or never happened).
        unsafe {
            for l in [self.a, self.b, self.d] {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
        }
    }
}

impl LtPlan {
    /// The descriptors of `Y[m, n] (row stride ldc) = X[m, k] W[n, k]^T`, inputs `t`, output `o`,
    /// f32 accumulation; in cuBLAS's column-major terms `Y^T = W^T' X^T'` with `transa = T`.
    /// Returns the plan (with the heuristic's first algorithm, if any) and every candidate.
    pub fn new(
        handle: &LtHandle,
        (m, n, k, ldc): (usize, usize, usize, usize),
        t: DType,
        o: DType,
        workspace_bytes: usize,
    ) -> Result<(Self, Vec<sys::cublasLtMatmulAlgo_t>)> {
        // Filled in step by step: on an early return, Drop destroys what was created.
        let mut plan = Self {
            desc: std::ptr::null_mut(),
            a: std::ptr::null_mut(),
            b: std::ptr::null_mut(),
            d: std::ptr::null_mut(),
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        plan.desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType::CUDA_R_32F,
        )
        .map_err(lt_err)?;
        let desc = plan.desc;
        let op_t = cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_T;
        // SAFETY: `desc` was just created; the attribute is a cublasOperation_t (cuBLAS's enum,
        // which cuBLASLt takes), passed by
        // pointer with its size.
        unsafe {
            lt::set_matmul_desc_attribute(
                desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&op_t as *const cudarc::cublas::sys::cublasOperation_t).cast(),
                std::mem::size_of::<cudarc::cublas::sys::cublasOperation_t>(),
            )
        }
        .map_err(lt_err)?;
        let layout = |ty: DType, rows: usize, cols: usize, ld: usize| {
            lt::create_matrix_layout(data_type(ty), rows as u64, cols as u64, ld as i64)
                .map_err(lt_err)
        };
        plan.a = layout(t, k, n, k)?;
        plan.b = layout(t, k, m, k)?;
        plan.d = layout(o, n, m, ldc)?;
        let pref = lt::create_matmul_pref().map_err(lt_err)?;
        let ws = workspace_bytes as u64;
        let mut found =
            [std::mem::MaybeUninit::<sys::cublasLtMatmulHeuristicResult_t>::uninit(); CANDIDATES];
        let mut count = 0i32;
        // SAFETY: `pref` was just created and is destroyed below; the attribute is a u64 byte
        // count; the heuristic writes at most CANDIDATES results into `found` and their number
        // into `count`; every descriptor is live.
        let status = unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
            .and_then(|_| {
                sys::cublasLtMatmulAlgoGetHeuristic(
                    handle.0,
                    plan.desc,
                    plan.a,
                    plan.b,
                    plan.d,
                    plan.d,
                    pref,
                    CANDIDATES as i32,
                    found.as_mut_ptr().cast(),
                    &mut count,
                )
                .result()
            })
        };
        // SAFETY: created above, destroyed once.
        let _ = unsafe { lt::destroy_matmul_pref(pref) };
        status.map_err(lt_err)?;
        let algos: Vec<_> = found[..count.clamp(0, CANDIDATES as i32) as usize]
            .iter()
            // SAFETY: the heuristic initialised the first `count` entries.
            .map(|r| unsafe { r.assume_init() })
            .filter(|r| r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS)
            .map(|r| r.algo)
            .collect();
        if let Some(&first) = algos.first() {
            plan.algo = first;
        }
        Ok((plan, algos))
    }

    /// Enqueues the product on `stream`.
    ///
    /// # Safety
    /// `ops.x`, `ops.w` and `ops.y` must be live device allocations of the plan's shape
    /// (x `m * k`, w `n * k` of its input type, y `(m - 1) * ldc + n` of its output type),
    /// `workspace` = (pointer, bytes) one allocation of that many bytes, all ordered on `stream`.
    pub unsafe fn run(
        &self,
        handle: &LtHandle,
        ops: LtOperands,
        (workspace, workspace_bytes): (*mut c_void, usize),
        stream: sys::cudaStream_t,
    ) -> Result<()> {
        let LtOperands { y, x, w } = ops;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the caller's contract; alpha / beta are host f32 as the f32 scale type
        // expects; C = D with beta 0.
        unsafe {
            lt::matmul(
                handle.0,
                self.desc,
                (&alpha as *const f32).cast(),
                (&beta as *const f32).cast(),
                w,
                self.a,
                x,
                self.b,
                y,
                self.d,
                y,
                self.d,
                &self.algo,
                workspace,
                workspace_bytes,
                stream,
            )
        }
        .map_err(lt_err)
    }
}
