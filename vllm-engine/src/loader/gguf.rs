//! GGUF (llama.cpp's single-file format, version 2 and 3): header, metadata key/values, tensor
//! infos, and tensor data read and dequantized to f32.
//!
//! Layout: magic `GGUF`, u32 version, u64 tensor count, u64 key/value count; the key/values
//! (string key, u32 type, value; arrays carry an element type and a u64 length); the tensor
//! infos (name, u32 rank, u64 dims with the fastest-varying first, u32 ggml type, u64 offset);
//! then the data, starting at the next multiple of `general.alignment` (default 32).
//!
//! Every read is bounds-checked: a truncated or corrupt file gives [`LoadError::Malformed`]
//! naming the file and what was being read. Cost: one read of the file, O(metadata) parsing;
//! tensors are decoded on request.

use super::LoadError;
use super::quant::{GgmlType, SUPPORTED_GGML_TYPES, dequantize};
use std::collections::HashMap;
use std::path::Path;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::UInt(v) => Some(v),
            MetaValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Float(v) => Some(v),
            MetaValue::UInt(v) => Some(v as f64),
            MetaValue::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// Where a tensor lies in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, slowest-varying first (the reverse of ggml's order): a HF weight's shape.
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    /// Byte range of the data in the file.
    pub start: usize,
    pub len: usize,
}

/// A parsed GGUF file, its bytes held in memory.
#[derive(Debug)]
pub struct GgufFile {
    pub file: String,
    pub version: u32,
    pub metadata: HashMap<String, MetaValue>,
    pub tensors: HashMap<String, TensorInfo>,
    bytes: Vec<u8>,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], LoadError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(LoadError::malformed(
                self.file,
                format!(
                    "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                    self.pos,
                    self.b.len()
                ),
            ));
        };
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, LoadError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64, LoadError> {
        let s = self.take(8, what)?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }

    /// A length that must fit in what is left of the file (each element at least `min` bytes).
    fn len(&mut self, what: &str, min: usize) -> Result<usize, LoadError> {
        let n = self.u64(what)?;
        let left = (self.b.len() - self.pos) as u64;
        if n.saturating_mul(min.max(1) as u64) > left {
            return Err(LoadError::malformed(
                self.file,
                format!(
                    "truncated or corrupt: {what} {n} at offset {} exceeds the {} bytes left",
                    self.pos - 8,
                    left
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, LoadError> {
        let n = self.len(what, 1)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| {
            LoadError::malformed(
                self.file,
                format!("{what} at offset {} is not UTF-8", self.pos),
            )
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<MetaValue, LoadError> {
        let what = format!("value of {key}");
        let v = match ty {
            0 => MetaValue::UInt(u64::from(self.take(1, &what)?[0])),
            1 => MetaValue::Int(i64::from(self.take(1, &what)?[0] as i8)),
            2 => MetaValue::UInt(u64::from(u16::from_le_bytes(
                self.take(2, &what)?.try_into().expect("2"),
            ))),
            3 => MetaValue::Int(i64::from(i16::from_le_bytes(
                self.take(2, &what)?.try_into().expect("2"),
            ))),
            4 => MetaValue::UInt(u64::from(self.u32(&what)?)),
            5 => MetaValue::Int(i64::from(self.u32(&what)? as i32)),
            6 => MetaValue::Float(f64::from(f32::from_bits(self.u32(&what)?))),
            7 => MetaValue::Bool(self.take(1, &what)?[0] != 0),
            8 => MetaValue::Str(self.string(&what)?),
            9 if depth == 0 => {
                let ety = self.u32(&what)?;
                let n = self.len(&format!("length of {key}"), 1)?;
                let mut a = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    a.push(self.value(ety, key, depth + 1)?);
                }
                MetaValue::Array(a)
            }
            10 => MetaValue::UInt(self.u64(&what)?),
            11 => MetaValue::Int(self.u64(&what)? as i64),
            12 => MetaValue::Float(f64::from_bits(self.u64(&what)?)),
            _ => {
                return Err(LoadError::malformed(
                    self.file,
                    format!("metadata {key}: unknown value type {ty}"),
                ));
            }
        };
        Ok(v)
    }
}

impl GgufFile {
    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse(bytes, file)
    }

    /// Parses a whole file held in memory; `file` names it in errors.
    pub fn parse(bytes: Vec<u8>, file: String) -> Result<Self, LoadError> {
        let mut c = Cursor {
            b: &bytes,
            pos: 0,
            file: &file,
        };
        if c.take(4, "magic")? != b"GGUF" {
            return Err(LoadError::malformed(&file, "not a GGUF file (bad magic)"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(LoadError::Unsupported {
                file: file.clone(),
                what: "GGUF version".into(),
                value: version.to_string(),
                supported: "2, 3".into(),
            });
        }
        // A tensor info takes at least 24 bytes, a key/value at least 12.
        let n_tensors = c.len("tensor count", 24)?;
        let n_kv = c.len("metadata count", 12)?;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32(&format!("type of {key}"))?;
            let v = c.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let rank = c.u32(&format!("rank of {name}"))?;
            if rank == 0 || rank > 4 {
                return Err(LoadError::malformed(
                    &file,
                    format!("tensor {name}: rank {rank} (expected 1..=4)"),
                ));
            }
            let mut dims = Vec::new();
            for _ in 0..rank {
                dims.push(c.u64(&format!("dims of {name}"))? as usize);
            }
            dims.reverse();
            let ty_id = c.u32(&format!("type of {name}"))?;
            let offset = c.u64(&format!("offset of {name}"))? as usize;
            infos.push((name, dims, ty_id, offset));
        }
        let align = metadata
            .get("general.alignment")
            .and_then(MetaValue::as_u64)
            .unwrap_or(32) as usize;
        if align == 0 || !align.is_power_of_two() {
            return Err(LoadError::malformed(
                &file,
                format!("general.alignment {align} is not a power of two"),
            ));
        }
        let data_start = c.pos.next_multiple_of(align);
        let mut tensors = HashMap::new();
        for (name, shape, ty_id, offset) in infos {
            let Some(ty) = GgmlType::from_id(ty_id) else {
                return Err(LoadError::Unsupported {
                    file: file.clone(),
                    what: format!("tensor {name} type"),
                    value: ty_id.to_string(),
                    supported: SUPPORTED_GGML_TYPES.into(),
                });
            };
            let n = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .unwrap_or(usize::MAX);
            let len = ty.bytes_for(n).ok_or_else(|| {
                LoadError::malformed(
                    &file,
                    format!("tensor {name}: {n} elements is not a whole number of {ty:?} blocks"),
                )
            })?;
            let start = data_start.saturating_add(offset);
            if start.saturating_add(len) > bytes.len() {
                return Err(LoadError::malformed(
                    &file,
                    format!(
                        "truncated: tensor {name} needs bytes {start}..{} but the file has {}",
                        start.saturating_add(len),
                        bytes.len()
                    ),
                ));
            }
            let info = TensorInfo {
                name: name.clone(),
                shape,
                ty,
                start,
                len,
            };
            tensors.insert(name, info);
        }
        Ok(Self {
            file,
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// A required unsigned metadata value.
    pub fn meta_u64(&self, key: &str) -> Result<u64, LoadError> {
        self.meta(key).and_then(MetaValue::as_u64).ok_or_else(|| {
            LoadError::malformed(&self.file, format!("missing or non-integer metadata {key}"))
        })
    }

    /// A required string metadata value.
    pub fn meta_str(&self, key: &str) -> Result<&str, LoadError> {
        self.meta(key).and_then(MetaValue::as_str).ok_or_else(|| {
            LoadError::malformed(&self.file, format!("missing or non-string metadata {key}"))
        })
    }

    /// Tensor `name` decoded to f32, in its HF shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), LoadError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| LoadError::MissingTensor {
                file: self.file.clone(),
                tensor: name.into(),
            })?;
        let n: usize = info.shape.iter().product();
        let mut out = vec![0.0f32; n];
        dequantize(
            info.ty,
            &self.bytes[info.start..info.start + info.len],
            &mut out,
        );
        Ok((info.shape.clone(), out))
    }
}
