//! HuggingFace safetensors weights: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json` (`weight_map`: tensor name -> shard file). Files are read
//! whole; headers are parsed once; F32, F16 and BF16 tensors convert to f32 on request.

use super::{LoadError, WeightSource};
use ::safetensors::{Dtype, SafeTensors};
use half::{bf16, f16};
use std::collections::HashMap;
use std::path::Path;

struct Shard {
    file: String,
    bytes: Vec<u8>,
    /// name -> (dtype, shape, absolute byte range)
    tensors: HashMap<String, (Dtype, Vec<usize>, usize, usize)>,
}

/// The safetensors files of one model folder.
pub struct SafetensorsSource {
    dir: String,
    shards: Vec<Shard>,
    /// tensor name -> shard index
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsSource")
            .field("dir", &self.dir)
            .field("shards", &self.shards.len())
            .field("tensors", &self.index.len())
            .finish()
    }
}

fn read_shard(path: &Path) -> Result<Shard, LoadError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    let (n, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| {
        LoadError::malformed(&file, format!("truncated or corrupt safetensors file: {e}"))
    })?;
    let base = 8 + n;
    let mut tensors = HashMap::new();
    for (name, info) in meta.tensors() {
        let (s, e) = info.data_offsets;
        if base + e > bytes.len() || s > e {
            return Err(LoadError::malformed(
                &file,
                format!(
                    "truncated: tensor {name} needs bytes {}..{} but the file has {}",
                    base + s,
                    base + e,
                    bytes.len()
                ),
            ));
        }
        tensors.insert(name, (info.dtype, info.shape.clone(), base + s, base + e));
    }
    Ok(Shard {
        file,
        bytes,
        tensors,
    })
}

impl SafetensorsSource {
    /// Opens the safetensors of folder `dir` (sharded when the index file is present).
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        let index_path = dir.join("model.safetensors.index.json");
        let mut files: Vec<String> = Vec::new();
        if index_path.exists() {
            let f = index_path.display().to_string();
            let text = std::fs::read_to_string(&index_path).map_err(|source| LoadError::Io {
                file: f.clone(),
                source,
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| LoadError::malformed(&f, format!("not JSON: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| LoadError::malformed(&f, "missing object `weight_map`"))?;
            for shard in map.values() {
                let s = shard
                    .as_str()
                    .ok_or_else(|| LoadError::malformed(&f, "weight_map values must be strings"))?;
                if s.contains('/') || s.contains('\\') {
                    return Err(LoadError::malformed(&f, format!("shard name {s:?}")));
                }
                if !files.iter().any(|x| x == s) {
                    files.push(s.to_string());
                }
            }
            files.sort();
        } else {
            files.push("model.safetensors".into());
        }
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for f in &files {
            let shard = read_shard(&dir.join(f))?;
            for name in shard.tensors.keys() {
                index.insert(name.clone(), shards.len());
            }
            shards.push(shard);
        }
        Ok(Self {
            dir: dir.display().to_string(),
            shards,
            index,
        })
    }

    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }
}

impl WeightSource for SafetensorsSource {
    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn file(&self) -> &str {
        &self.dir
    }

    fn load_any(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), LoadError> {
        let shard = self
            .index
            .get(name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| LoadError::MissingTensor {
                file: self.dir.clone(),
                tensor: name.into(),
            })?;
        let (dtype, shape, s, e) = &shard.tensors[name];
        let b = &shard.bytes[*s..*e];
        let n: usize = shape.iter().product();
        let width = match dtype {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            other => {
                return Err(LoadError::Unsupported {
                    file: shard.file.clone(),
                    what: format!("dtype of tensor {name}"),
                    value: format!("{other:?}"),
                    supported: "F32, F16, BF16".into(),
                });
            }
        };
        if b.len() != n * width {
            return Err(LoadError::malformed(
                &shard.file,
                format!(
                    "tensor {name}: {} bytes for shape {shape:?} of {dtype:?}",
                    b.len()
                ),
            ));
        }
        let data = match dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        Ok((shape.clone(), data))
    }
}
