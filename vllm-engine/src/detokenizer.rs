//! Incremental detokenization and stop strings.
//!
//! [`OutputText`] turns a request's output tokens, one at a time, into text deltas for a
//! streaming client. It decodes a small window of recent tokens twice (vLLM's prefix / read
//! offsets) and emits only what the newest token added, so a character split over two tokens
//! (multi-byte UTF-8 in byte-level BPE) appears once it is complete, never as U+FFFD, and
//! tokenizers that change spacing by context still give the right text. Stop strings are found
//! across token boundaries; while streaming, the last `longest stop - 1` characters are held
//! back so a stop string is never partly sent. Cost per token: two decodes of a window of a few
//! tokens, plus a search of the last `new + longest stop` characters.

/// Token ids to text; the engine's tokenizer implements it (and tests use small fakes).
pub trait Decode {
    /// The text of `ids`, with U+FFFD for bytes that do not form complete UTF-8.
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String;
}

/// Why a token ended the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopMatch {
    /// The stop string found.
    pub stop: String,
}

/// What one token adds: text to send now, and the stop string if one was completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextDelta {
    pub text: String,
    pub stopped: Option<StopMatch>,
}

/// The output text of one request, built incrementally.
#[derive(Debug, Clone)]
pub struct OutputText {
    tokens: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
    stops: Vec<String>,
    include_stop: bool,
    /// Characters held back while streaming (longest stop string - 1).
    hold: usize,
    text: String,
    /// Bytes of `text` already returned.
    sent: usize,
    done: bool,
}

impl OutputText {
    /// `context` is the tail of the prompt (a few tokens), so the first output token is
    /// decoded with the spacing it has after the prompt.
    pub fn new(
        context: &[u32],
        stops: &[String],
        include_stop: bool,
        skip_special_tokens: bool,
    ) -> Self {
        let context = &context[context.len().saturating_sub(5)..];
        Self {
            tokens: context.to_vec(),
            prefix_offset: 0,
            read_offset: context.len(),
            skip_special_tokens,
            stops: stops.to_vec(),
            include_stop,
            hold: stops
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(1)
                .saturating_sub(1),
            text: String::new(),
            sent: 0,
            done: false,
        }
    }

    /// All output text so far (up to the stop string, when one was found).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Adds one output token. After a stop string is found, further tokens add nothing.
    pub fn push(&mut self, decoder: &impl Decode, token: u32) -> TextDelta {
        if self.done {
            return TextDelta::default();
        }
        self.tokens.push(token);
        let skip = self.skip_special_tokens;
        let prefix = decoder.decode(&self.tokens[self.prefix_offset..self.read_offset], skip);
        let full = decoder.decode(&self.tokens[self.prefix_offset..], skip);
        let prefix_chars = prefix.chars().count();
        if full.chars().count() <= prefix_chars || full.ends_with('\u{FFFD}') {
            return TextDelta::default(); // incomplete character: wait for the next token
        }
        let new: String = full.chars().skip(prefix_chars).collect();
        self.prefix_offset = self.read_offset;
        self.read_offset = self.tokens.len();
        let searched_from = self.text.len();
        self.text.push_str(&new);
        let stopped = self.find_stop(searched_from);
        let end = if stopped.is_some() {
            self.done = true;
            self.text.len()
        } else {
            self.streamable_end()
        };
        let text = self.text[self.sent..end.max(self.sent)].to_string();
        self.sent = end.max(self.sent);
        TextDelta { text, stopped }
    }

    /// The held-back tail, once the request has finished for another reason.
    pub fn finish(&mut self) -> String {
        self.done = true;
        let rest = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        rest
    }

    /// Byte offset up to which text can be sent without risking half a stop string.
    fn streamable_end(&self) -> usize {
        match self
            .text
            .char_indices()
            .rev()
            .nth(self.hold.saturating_sub(1))
        {
            _ if self.hold == 0 => self.text.len(),
            Some((i, _)) => i,
            None => 0,
        }
    }

    /// Looks for a stop string ending in the text just added; truncates the text there.
    fn find_stop(&mut self, added_at: usize) -> Option<StopMatch> {
        let mut best: Option<(usize, &String)> = None;
        for stop in &self.stops {
            // A match must end inside the new text, so it starts at most stop.len() before it.
            let mut from = added_at.saturating_sub(stop.len());
            while !self.text.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(i) = self.text[from..].find(stop.as_str()) {
                let at = from + i;
                // Matches wholly inside older text were found when that text was added.
                if at + stop.len() > added_at && best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, stop));
                }
            }
        }
        let (at, stop) = best?;
        let stop = stop.clone();
        let cut = if self.include_stop {
            at + stop.len()
        } else {
            at
        };
        self.text.truncate(cut);
        self.sent = self.sent.min(cut);
        Some(StopMatch { stop })
    }
}
