//! `--load-format dummy`: weights of the right shapes from a config alone, to run and
//! benchmark real architectures without their files. Matrices are uniform with standard
//! deviation 0.02 (the usual init scale), norm weights are 1; each tensor's values come from
//! generators seeded by its name (one per chunk of 2^20 values, filled in parallel), so two
//! loads agree. Cost: O(parameters), spread over the rayon pool.

use super::{LoadError, WeightSource};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Random weights for any tensor the model asks for.
#[derive(Debug)]
pub struct DummySource {
    tied_embeddings: bool,
    seed: u64,
}

impl DummySource {
    pub fn new(tied_embeddings: bool, seed: u64) -> Self {
        Self {
            tied_embeddings,
            seed,
        }
    }
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    name.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

impl WeightSource for DummySource {
    fn contains(&self, name: &str) -> bool {
        !(self.tied_embeddings && name == "lm_head.weight")
    }

    fn file(&self) -> &str {
        "<dummy weights>"
    }

    fn load_any(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), LoadError> {
        Err(LoadError::MissingTensor {
            file: "<dummy weights>: shapes come from the config".into(),
            tensor: name.into(),
        })
    }

    fn load(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        let n: usize = expected.iter().product();
        if name.ends_with("norm.weight") {
            return Ok(vec![1.0; n]);
        }
        const CHUNK: usize = 1 << 20;
        let a = 0.02 * 3f32.sqrt();
        let base = self.seed ^ name_hash(name);
        let mut out = vec![0.0f32; n];
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| {
                let mut rng =
                    SmallRng::seed_from_u64(base ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                chunk.iter_mut().for_each(|v| *v = rng.random_range(-a..a));
            });
        Ok(out)
    }
}
