//! Weight loaders: HuggingFace folders (config.json + safetensors, single or sharded), GGUF
//! files (dequantized at load), and dummy random weights from a config alone. Each implements
//! [`WeightSource`]: tensors by their HuggingFace names, as f32, shape-checked. Errors name the
//! file and the tensor; nothing here panics on bad files.

pub mod dummy;
pub mod gguf;
pub mod gguf_model;
pub mod quant;
pub mod safetensors;

use crate::config::ConfigError;

/// Why weights or a tokenizer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Malformed { file: String, reason: String },
    #[error("{file}: missing tensor `{tensor}`")]
    MissingTensor { file: String, tensor: String },
    #[error("{file}: tensor `{tensor}` has shape {found:?}, the config needs {expected:?}")]
    Shape {
        file: String,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{file}: unsupported {what} {value}; supported: {supported}")]
    Unsupported {
        file: String,
        what: String,
        value: String,
        supported: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: tokenizer: {reason}")]
    Tokenizer { file: String, reason: String },
    /// Uploading a tensor to the device failed (out of memory, driver error).
    #[error("tensor `{tensor}`: device upload failed: {message}")]
    Device { tensor: String, message: String },
}

impl LoadError {
    pub(crate) fn malformed(file: &str, reason: impl Into<String>) -> Self {
        LoadError::Malformed {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

/// Where a model's tensors come from, by HuggingFace name (`model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource {
    /// Whether the source has tensor `name`.
    fn contains(&self, name: &str) -> bool;
    /// Tensor `name` as f32 with its shape, row-major.
    fn load_any(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), LoadError>;
    /// The file named in errors.
    fn file(&self) -> &str;

    /// Tensor `name`, which must have shape `expected`.
    fn load(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, LoadError> {
        let (shape, data) = self.load_any(name)?;
        if shape != expected {
            return Err(LoadError::Shape {
                file: self.file().into(),
                tensor: name.into(),
                expected: expected.to_vec(),
                found: shape,
            });
        }
        Ok(data)
    }
}
