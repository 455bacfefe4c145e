//! `SamplingParams` with vLLM's fields and validation rules. [`SamplingParams::validate`] is
//! the only way to a [`ValidSamplingParams`]; every error names the field, the limit and the
//! value given.

use std::collections::HashMap;

/// Largest `logprobs` / `prompt_logprobs` a request may ask for.
pub const MAX_LOGPROBS: usize = 20;

/// What a request asks of the sampler and of the stop checks. Defaults match vLLM's.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Output sequences per prompt.
    pub n: usize,
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus: keep the smallest set of tokens whose probability sums to at least top_p.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 or -1 keeps all.
    pub top_k: i32,
    /// Drop tokens less likely than min_p times the most likely one.
    pub min_p: f32,
    /// Subtracted from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted once per occurrence in the generated tokens.
    pub frequency_penalty: f32,
    /// Divides positive / multiplies negative logits of tokens seen in prompt or output.
    pub repetition_penalty: f32,
    /// Per-request seed: the same seed gives the same tokens whatever else is in the batch.
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub include_stop_str_in_output: bool,
    pub ignore_eos: bool,
    /// Output tokens at most; `None` runs to the model's maximum length.
    pub max_tokens: Option<usize>,
    /// EOS and stop tokens are masked until this many tokens have been generated.
    pub min_tokens: usize,
    /// Top log-probabilities returned per output token.
    pub logprobs: Option<usize>,
    /// Top log-probabilities returned per prompt token.
    pub prompt_logprobs: Option<usize>,
    /// Added to the logits of these tokens (clamped to [-100, 100] as vLLM does).
    pub logit_bias: HashMap<u32, f32>,
    pub skip_special_tokens: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            seed: None,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            include_stop_str_in_output: false,
            ignore_eos: false,
            max_tokens: Some(16),
            min_tokens: 0,
            logprobs: None,
            prompt_logprobs: None,
            logit_bias: HashMap::new(),
            skip_special_tokens: true,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of up to `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_tokens: Some(max_tokens),
            ..Self::default()
        }
    }

    /// Checks every field against vLLM's rules; `vocab_size` bounds the token ids in
    /// `logit_bias` and `stop_token_ids`.
    pub fn validate(self, vocab_size: usize) -> Result<ValidSamplingParams, SamplingParamsError> {
        let err = |field: &'static str, rule: &'static str, value: String| {
            Err(SamplingParamsError { field, rule, value })
        };
        if self.n < 1 {
            return err("n", "must be >= 1", self.n.to_string());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return err(
                "temperature",
                "must be a finite number >= 0",
                self.temperature.to_string(),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return err("top_p", "must be in (0, 1]", self.top_p.to_string());
        }
        if self.top_k < -1 {
            return err(
                "top_k",
                "must be -1, 0 (disable) or >= 1",
                self.top_k.to_string(),
            );
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return err("min_p", "must be in [0, 1]", self.min_p.to_string());
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return err(
                "presence_penalty",
                "must be in [-2, 2]",
                self.presence_penalty.to_string(),
            );
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return err(
                "frequency_penalty",
                "must be in [-2, 2]",
                self.frequency_penalty.to_string(),
            );
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return err(
                "repetition_penalty",
                "must be a finite number > 0",
                self.repetition_penalty.to_string(),
            );
        }
        if self.max_tokens == Some(0) {
            return err("max_tokens", "must be >= 1", "0".into());
        }
        if let Some(max) = self.max_tokens
            && self.min_tokens > max
        {
            return err(
                "min_tokens",
                "must be <= max_tokens",
                format!("{} (max_tokens {max})", self.min_tokens),
            );
        }
        for (name, value) in [
            ("logprobs", self.logprobs),
            ("prompt_logprobs", self.prompt_logprobs),
        ] {
            if let Some(k) = value
                && k > MAX_LOGPROBS
            {
                return err(name, "must be <= 20", k.to_string());
            }
        }
        if self.stop.iter().any(String::is_empty) {
            return err("stop", "must not contain an empty string", "\"\"".into());
        }
        let bad_id = |id: &u32| *id as usize >= vocab_size;
        if let Some(id) = self.stop_token_ids.iter().find(|id| bad_id(id)) {
            return err(
                "stop_token_ids",
                "must be < the vocabulary size",
                format!("{id} (vocab {vocab_size})"),
            );
        }
        if let Some((id, _)) = self.logit_bias.iter().find(|(id, _)| bad_id(id)) {
            return err(
                "logit_bias",
                "token ids must be < the vocabulary size",
                format!("{id} (vocab {vocab_size})"),
            );
        }
        if let Some((id, b)) = self.logit_bias.iter().find(|(_, b)| !b.is_finite()) {
            return err(
                "logit_bias",
                "values must be finite",
                format!("{b} for token {id}"),
            );
        }
        let mut p = self;
        for b in p.logit_bias.values_mut() {
            *b = b.clamp(-100.0, 100.0);
        }
        Ok(ValidSamplingParams(p))
    }
}

/// Sampling parameters that passed [`SamplingParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSamplingParams(SamplingParams);

impl std::ops::Deref for ValidSamplingParams {
    type Target = SamplingParams;
    fn deref(&self) -> &SamplingParams {
        &self.0
    }
}

impl ValidSamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The parameters a device sampler needs when the next token (after `output_len`
    /// generated ones) can be drawn with temperature, min-p, top-k and top-p alone: no
    /// log-probabilities, bias or penalties, and no `min_tokens` masking left to do. The draw
    /// is then the same distribution as the CPU sampler's, except where top-k / top-p cut
    /// between two tokens whose f32 weights round equal (scores within ~1e-7 of each other):
    /// the CPU orders those by index, the device by score.
    pub fn device_sampling(&self, output_len: usize) -> Option<DeviceSampling> {
        let simple = self.logprobs.is_none()
            && self.logit_bias.is_empty()
            && self.repetition_penalty == 1.0
            && self.frequency_penalty == 0.0
            && self.presence_penalty == 0.0
            && output_len >= self.min_tokens;
        simple.then_some(DeviceSampling {
            temperature: self.temperature,
            min_p: self.min_p,
            top_k: self.top_k.max(0),
            top_p: self.top_p,
        })
    }
}

/// What a device sampler draws with: 0 temperature is greedy; `top_k` 0 and `top_p` 1 keep
/// every token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceSampling {
    pub temperature: f32,
    pub min_p: f32,
    pub top_k: i32,
    pub top_p: f32,
}

impl DeviceSampling {
    /// Greedy (argmax).
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        min_p: 0.0,
        top_k: 0,
        top_p: 1.0,
    };
}

/// An invalid sampling parameter: which, the rule, and the value given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sampling parameter `{field}`: {rule}, got {value}")]
pub struct SamplingParamsError {
    pub field: &'static str,
    pub rule: &'static str,
    pub value: String,
}
