//! Model loading: a HuggingFace folder (safetensors), a GGUF file, or dummy weights from a
//! `config.json`. Two phases: [`open_model`] reads the config (and a GGUF's tokenizer), so the
//! engine checks its arguments against it first; [`ModelFiles::load_weights`] then reads every
//! weight tensor once, handing each to a converter (f32 on the host, or an upload to the GPU).
//! Cost: one pass over the weight files.

use super::args::{EngineArgs, GenerationDefaults, LoadFormat};
use crate::config::ModelConfig;
use crate::loader::dummy::DummySource;
use crate::loader::gguf::GgufFile;
use crate::loader::gguf_model::GgufSource;
use crate::loader::safetensors::SafetensorsSource;
use crate::loader::{LoadError, WeightSource};
use crate::model::ModelWeights;
use crate::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

/// A loaded model: its config, f32 weights and tokenizer (absent for dummy weights without
/// tokenizer files), and the sampling defaults of its `generation_config.json`.
#[derive(Debug)]
pub struct LoadedModel<W = Vec<f32>> {
    pub config: ModelConfig,
    pub weights: ModelWeights<W>,
    pub tokenizer: Option<Tokenizer>,
    pub generation_defaults: GenerationDefaults,
}

fn is_gguf(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Loads what `args` names, weights in f32 on the host.
pub fn load_model(args: &EngineArgs) -> Result<LoadedModel, LoadError> {
    load_model_with(args, &mut |_, v| Ok(v))
}

/// Loads what `args` names, handing each weight tensor to `convert` as it is read (the CUDA
/// runner uploads it).
pub fn load_model_with<W>(
    args: &EngineArgs,
    convert: &mut crate::model::weights::ConvertTensor<'_, W>,
) -> Result<LoadedModel<W>, LoadError> {
    open_model(args)?.load_weights(convert)
}

/// A model opened for loading: its config read (and a GGUF's tokenizer), its weights not yet,
/// so the engine can check its arguments against the config before reading any weight.
pub struct ModelFiles {
    config: ModelConfig,
    source: Box<dyn WeightSource>,
    /// The tokenizer already read (`args.tokenizer`, or a GGUF's own).
    tokenizer: Option<Tokenizer>,
    /// A model folder, whose `tokenizer.json` (if any) is read after the weights.
    folder: Option<PathBuf>,
    path: PathBuf,
}

impl std::fmt::Debug for ModelFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFiles")
            .field("path", &self.path)
            .field("weights", &self.source.file())
            .finish()
    }
}

/// Opens what `args` names: checks the path, reads the config (and a GGUF's tokenizer).
pub fn open_model(args: &EngineArgs) -> Result<ModelFiles, LoadError> {
    let path = &args.model;
    let file = path.display().to_string();
    if !path.exists() {
        return Err(LoadError::Io {
            file,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    let format = match args.load_format {
        LoadFormat::Auto if is_gguf(path) => LoadFormat::Gguf,
        LoadFormat::Auto => LoadFormat::Safetensors,
        f => f,
    };
    let extra_tokenizer = match &args.tokenizer {
        Some(t) => Some(Tokenizer::from_hf_dir(t)?),
        None => None,
    };
    if format == LoadFormat::Gguf {
        let gguf = GgufFile::open(path)?;
        let tokenizer = match extra_tokenizer {
            Some(t) => t,
            None => Tokenizer::from_gguf(&gguf)?,
        };
        let (src, config) = GgufSource::new(gguf)?;
        return Ok(ModelFiles {
            config,
            source: Box::new(src),
            tokenizer: Some(tokenizer),
            folder: None,
            path: path.clone(),
        });
    }
    if !path.is_dir() {
        return Err(LoadError::malformed(
            &file,
            "expected a model folder (config.json, *.safetensors) or a .gguf file",
        ));
    }
    let config = ModelConfig::from_file(&path.join("config.json"))?;
    let source: Box<dyn WeightSource> = if format == LoadFormat::Dummy {
        Box::new(DummySource::new(config.tie_word_embeddings, args.seed))
    } else {
        Box::new(SafetensorsSource::open(path)?)
    };
    Ok(ModelFiles {
        config,
        source,
        folder: extra_tokenizer.is_none().then(|| path.clone()),
        tokenizer: extra_tokenizer,
        path: path.clone(),
    })
}

impl ModelFiles {
    /// The model's config (before `generation_config.json`'s EOS ids are added).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Reads the weights, handing each tensor to `convert`; then a folder's tokenizer and
    /// `generation_config.json`.
    pub fn load_weights<W>(
        self,
        convert: &mut crate::model::weights::ConvertTensor<'_, W>,
    ) -> Result<LoadedModel<W>, LoadError> {
        let weights = ModelWeights::load_with(&self.config, self.source.as_ref(), convert)?;
        let tokenizer = match (self.tokenizer, &self.folder) {
            (Some(t), _) => Some(t),
            (None, Some(dir)) if dir.join("tokenizer.json").exists() => {
                Some(Tokenizer::from_hf_dir(dir)?)
            }
            (None, _) => None,
        };
        let (config, generation_defaults) = with_generation_config(self.config, &self.path)?;
        Ok(LoadedModel {
            config,
            weights,
            tokenizer,
            generation_defaults,
        })
    }
}

/// Adds `generation_config.json`'s EOS ids (a folder's file may list several) and reads its
/// sampling defaults.
fn with_generation_config(
    mut c: ModelConfig,
    dir: &Path,
) -> Result<(ModelConfig, GenerationDefaults), LoadError> {
    let p = dir.join("generation_config.json");
    if !dir.is_dir() || !p.exists() {
        return Ok((c, GenerationDefaults::default()));
    }
    let file = p.display().to_string();
    let text = std::fs::read_to_string(&p).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| LoadError::malformed(&file, format!("not JSON: {e}")))?;
    let ids: Vec<u32> = match v.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|x| vec![x as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    };
    for id in ids {
        if !c.eos_token_ids.contains(&id) {
            c.eos_token_ids.push(id);
        }
    }
    let f = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .map(|x| x as f32)
    };
    // transformers' do_sample = false means greedy whatever the temperature says.
    let greedy = v.get("do_sample").and_then(serde_json::Value::as_bool) == Some(false);
    let d = GenerationDefaults {
        temperature: if greedy { Some(0.0) } else { f("temperature") },
        top_p: f("top_p"),
        top_k: v
            .get("top_k")
            .and_then(serde_json::Value::as_i64)
            .map(|x| x as i32),
        min_p: f("min_p"),
        repetition_penalty: f("repetition_penalty"),
    };
    Ok((c, d))
}
