//! The tokenizer: HuggingFace `tokenizer.json` (+ `tokenizer_config.json` for the chat
//! template, special tokens and BOS handling), or rebuilt from a GGUF file's metadata as a
//! byte-level BPE `tokenizers` tokenizer (vocab, merges, pre-tokenizer by `tokenizer.ggml.pre`,
//! special tokens, chat template).

use crate::detokenizer::Decode;
use crate::loader::LoadError;
use crate::loader::gguf::{GgufFile, MetaValue};
use serde_json::{Value, json};
use std::path::Path;

/// GGUF `tokenizer.ggml.pre` values understood (byte-level BPE pre-tokenizers).
pub const SUPPORTED_GGUF_PRE: &str = "default, gpt2, gpt-2, smollm, llama-bpe, llama3, qwen2";

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Text <-> token ids for one model, with its chat template and special tokens.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Vocabulary size with added tokens, computed once (`tokenizers` rebuilds the whole
    /// vocabulary map to count it).
    size: usize,
    /// Jinja chat template, when the model has one.
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// End-of-sequence ids known to the tokenizer files (the model config may add more).
    pub eos_token_ids: Vec<u32>,
}

/// Why a chat could not be turned into a prompt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("the model has no chat template")]
    NoChatTemplate,
    #[error(transparent)]
    Template(#[from] crate::chat::ChatTemplateError),
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
}

/// Text that could not be tokenized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct TokenizeError(pub String);

fn tok_err(file: &str, reason: impl std::fmt::Display) -> LoadError {
    LoadError::Tokenizer {
        file: file.into(),
        reason: reason.to_string(),
    }
}

/// `"<s>"` or `{"content": "<s>", ...}` as found in tokenizer_config.json.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// `tokenizer.json` and, when present, `tokenizer_config.json` and `chat_template.jinja`
    /// of a HuggingFace folder.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, LoadError> {
        let path = dir.join("tokenizer.json");
        let file = path.display().to_string();
        if !path.exists() {
            return Err(tok_err(&file, "file not found"));
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| tok_err(&file, e))?;
        let mut t = Self {
            size: inner.get_vocab_size(true),
            inner,
            chat_template: None,
            bos_token: None,
            eos_token: None,
            eos_token_ids: Vec::new(),
        };
        let cfg_path = dir.join("tokenizer_config.json");
        if cfg_path.exists() {
            let cfile = cfg_path.display().to_string();
            let text = std::fs::read_to_string(&cfg_path).map_err(|source| LoadError::Io {
                file: cfile.clone(),
                source,
            })?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| tok_err(&cfile, format!("not JSON: {e}")))?;
            t.bos_token = token_string(v.get("bos_token"));
            t.eos_token = token_string(v.get("eos_token"));
            t.chat_template = match v.get("chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                // A list of named templates: take "default", else the first.
                Some(Value::Array(a)) => a
                    .iter()
                    .find(|x| x.get("name").and_then(Value::as_str) == Some("default"))
                    .or_else(|| a.first())
                    .and_then(|x| x.get("template"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            };
        }
        // transformers >= 5 saves the template beside the config, and prefers that file.
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            let jfile = jinja.display().to_string();
            t.chat_template =
                Some(
                    std::fs::read_to_string(&jinja).map_err(|source| LoadError::Io {
                        file: jfile,
                        source,
                    })?,
                );
        }
        if let Some(e) = &t.eos_token
            && let Some(id) = t.inner.token_to_id(e)
        {
            t.eos_token_ids.push(id);
        }
        Ok(t)
    }

    /// Rebuilds the tokenizer stored in a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, LoadError> {
        let file = g.file.as_str();
        let model = g.meta_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(LoadError::Unsupported {
                file: file.into(),
                what: "tokenizer.ggml.model".into(),
                value: model.into(),
                supported: "gpt2 (byte-level BPE)".into(),
            });
        }
        let strings = |key: &str| -> Result<Vec<String>, LoadError> {
            let a = g
                .meta(key)
                .and_then(MetaValue::as_array)
                .ok_or_else(|| tok_err(file, format!("missing array {key}")))?;
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| tok_err(file, format!("{key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = g
            .meta("tokenizer.ggml.token_type")
            .and_then(MetaValue::as_array)
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
            .unwrap_or_default();
        let pre = g
            .meta("tokenizer.ggml.pre")
            .and_then(MetaValue::as_str)
            .unwrap_or("default");
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
        let pre_tokenizer = match pre {
            "default" | "gpt2" | "gpt-2" => byte_level(true),
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
                split(LLAMA3_SPLIT), byte_level(false)]}),
            "qwen2" => json!({"type": "Sequence", "pretokenizers": [
                split(QWEN2_SPLIT), byte_level(false)]}),
            other => {
                return Err(LoadError::Unsupported {
                    file: file.into(),
                    what: "tokenizer.ggml.pre".into(),
                    value: other.into(),
                    supported: SUPPORTED_GGUF_PRE.into(),
                });
            }
        };
        let vocab: serde_json::Map<String, Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        // Control (3) and user-defined (4) tokens are matched whole, before BPE.
        let added: Vec<Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(3 | 4)))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": types[i] == 3})
            })
            .collect();
        let id = |k: &str| {
            g.meta(k)
                .and_then(MetaValue::as_u64)
                .map(|v| v as usize)
                .filter(|&v| v < tokens.len())
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let add_bos = g
            .meta("tokenizer.ggml.add_bos_token")
            .and_then(MetaValue::as_bool)
            .unwrap_or(false);
        let post_processor = match bos {
            Some(b) if add_bos => json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": tokens[b], "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": tokens[b], "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {tokens[b].clone(): {"id": tokens[b], "ids": [b], "tokens": [tokens[b]]}}
            }),
            _ => Value::Null,
        };
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        });
        let inner: tokenizers::Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e| tok_err(file, format!("rebuilding the BPE tokenizer: {e}")))?;
        let eos = id("tokenizer.ggml.eos_token_id");
        Ok(Self {
            size: inner.get_vocab_size(true),
            inner,
            chat_template: g
                .meta("tokenizer.chat_template")
                .and_then(MetaValue::as_str)
                .map(str::to_string),
            bos_token: bos.map(|b| tokens[b].clone()),
            eos_token: eos.map(|e| tokens[e].clone()),
            eos_token_ids: eos.map(|e| vec![e as u32]).unwrap_or_default(),
        })
    }

    /// Token ids of `text`; `add_special_tokens` applies the post-processor (BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizeError> {
        self.inner
            .encode_fast(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizeError(e.to_string()))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.size
    }

    /// Prompt text for `messages` by the chat template, with the assistant turn opened.
    pub fn apply_chat_template(
        &self,
        messages: &[crate::chat::ChatMessage],
    ) -> Result<String, ChatError> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or(ChatError::NoChatTemplate)?;
        Ok(crate::chat::render(
            template,
            messages,
            true,
            self.bos_token.as_deref(),
            self.eos_token.as_deref(),
        )?)
    }

    /// Token ids of a chat: the template's text tokenized without adding special tokens again
    /// (the template writes them), as vLLM does.
    pub fn encode_chat(
        &self,
        messages: &[crate::chat::ChatMessage],
    ) -> Result<Vec<u32>, ChatError> {
        let text = self.apply_chat_template(messages)?;
        Ok(self.encode(&text, false)?)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

impl Decode for Tokenizer {
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        // Ids outside the vocabulary decode to nothing rather than failing the request.
        let n = self.size as u32;
        let ids: Vec<u32> = ids.iter().copied().filter(|&i| i < n).collect();
        self.inner
            .decode(&ids, skip_special_tokens)
            .unwrap_or_default()
    }
}
