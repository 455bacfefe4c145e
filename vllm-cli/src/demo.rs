//! `vllm demo`: the pre-attention part of a Llama block (RMSNorm, then SiLU-and-mul on an MLP
//! activation) on random bf16 data, on the device the engine would use. On a GPU the result is
//! compared with the CPU reference; on the CPU the reference is the path.

use half::bf16;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;
use vllm_engine::Device;
use vllm_kernels::args::{ActAndMulArgs, Activation, RmsNormArgs};
use vllm_kernels::{KernelError, cpu};

pub fn info() {
    println!("vllm {}", env!("CARGO_PKG_VERSION"));
    println!("cuda backend compiled: {}", Device::cuda_compiled());
    println!("device: {}", Device::best_available().describe());
}

fn random(n: usize, rng: &mut StdRng) -> Vec<bf16> {
    (0..n)
        .map(|_| bf16::from_f32(rng.random_range(-2.0f32..2.0)))
        .collect()
}

pub fn run(tokens: usize, hidden: usize) -> Result<(), KernelError> {
    let device = Device::best_available();
    println!("device: {}", device.describe());
    let mut rng = StdRng::seed_from_u64(0);
    let x = random(tokens * hidden, &mut rng);
    let w = random(hidden, &mut rng);
    let gate_up = random(tokens * 2 * hidden, &mut rng);
    let norm = RmsNormArgs::new(tokens, hidden, 1e-5);
    let act = ActAndMulArgs::new(tokens, hidden, Activation::Silu);

    let t = Instant::now();
    let mut normed = vec![bf16::ZERO; tokens * hidden];
    cpu::rms_norm(&mut normed, &x, &w, &norm)?;
    let mut mlp = vec![bf16::ZERO; tokens * hidden];
    cpu::act_and_mul(&mut mlp, &gate_up, &act)?;
    let cpu_ms = t.elapsed().as_secs_f64() * 1e3;
    println!("cpu  rms_norm + silu_and_mul, {tokens} x {hidden} bf16: {cpu_ms:.2} ms");
    println!("     normed[0][..4] = {:?}", &normed[..4.min(normed.len())]);

    #[cfg(feature = "cuda")]
    if let Device::Cuda { ordinal } = device {
        let case = gpu::Case {
            x: &x,
            w: &w,
            gate_up: &gate_up,
            norm: &norm,
            act: &act,
            normed: &normed,
            mlp: &mlp,
        };
        gpu::run(ordinal, &case)?;
    }
    Ok(())
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use vllm_kernels::cuda;

    /// Norm-wise relative difference |a - b| / |b|.
    fn rel_diff(a: &[bf16], b: &[bf16]) -> f64 {
        let (mut num, mut den) = (0f64, 0f64);
        for (x, y) in a.iter().zip(b) {
            num += ((x.to_f32() - y.to_f32()) as f64).powi(2);
            den += (y.to_f32() as f64).powi(2);
        }
        (num / den.max(f64::MIN_POSITIVE)).sqrt()
    }

    /// The demo's inputs, arguments and CPU results (`normed`, `mlp`) to compare against.
    pub struct Case<'a> {
        pub x: &'a [bf16],
        pub w: &'a [bf16],
        pub gate_up: &'a [bf16],
        pub norm: &'a RmsNormArgs,
        pub act: &'a ActAndMulArgs,
        pub normed: &'a [bf16],
        pub mlp: &'a [bf16],
    }

    pub fn run(ordinal: usize, c: &Case<'_>) -> Result<(), KernelError> {
        let Case {
            x,
            w,
            gate_up,
            norm,
            act,
            normed: normed_ref,
            mlp: mlp_ref,
        } = *c;
        let Some(ctx) = cuda::try_context(ordinal) else {
            println!("cuda:{ordinal} unavailable; CPU result only");
            return Ok(());
        };
        let s = ctx.default_stream();
        let (xd, wd, gd) = (s.clone_htod(x)?, s.clone_htod(w)?, s.clone_htod(gate_up)?);
        let mut out = s.alloc_zeros::<bf16>(normed_ref.len())?;
        let mut mlp = s.alloc_zeros::<bf16>(mlp_ref.len())?;
        let t = Instant::now();
        cuda::rms_norm(&s, &mut out, &xd, &wd, norm)?;
        cuda::act_and_mul(&s, &mut mlp, &gd, act)?;
        s.synchronize()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let (out, mlp) = (s.clone_dtoh(&out)?, s.clone_dtoh(&mlp)?);
        println!("gpu  rms_norm + silu_and_mul: {ms:.3} ms (first launch, includes module load)");
        println!(
            "     relative difference |gpu - cpu| / |cpu|: rms_norm {:.2e}, silu_and_mul {:.2e} (bf16 tolerance 1e-2)",
            rel_diff(&out, normed_ref),
            rel_diff(&mlp, mlp_ref)
        );
        Ok(())
    }
}
