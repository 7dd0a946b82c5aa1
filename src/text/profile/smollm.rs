//! A local chat model on the CPU: SmolLM2-135M-Instruct (or another llama-architecture
//! GGUF with a byte-level BPE vocabulary) run with candle-transformers'
//! `quantized_llama`, the tokenizer rebuilt from the GGUF metadata, the ChatML template
//! `<|im_start|>role\n...<|im_end|>\n`. Greedy decoding by default, seeded sampling when a
//! request has a temperature; generation stops at `<|im_end|>`, `<|endoftext|>` or the
//! token limit. Requests of a batch run one after another (one model, one KV cache).

use super::gguf_tokenizer::{gguf_tokenizer, special_ids};
use crate::text::{ChatModel, ChatRequest};
use anyhow::{bail, Context};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
use tokenizers::Tokenizer;

/// Decoding options of a [`LocalGguf`] that are not part of a [`ChatRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct LocalOptions {
    /// Penalty on logits of recently generated tokens (1 = none). A value other than 1
    /// is part of the model name, hence of the prompt hash.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            repeat_penalty: 1.0,
            repeat_last_n: 64,
        }
    }
}

/// One generation with its timings.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Whether it stopped at an end token (rather than the token limit).
    pub stopped: bool,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl Generation {
    /// Generated tokens per second of decoding (prefill excluded).
    pub fn tokens_per_second(&self) -> f64 {
        if self.decode_seconds > 0.0 {
            self.generated_tokens as f64 / self.decode_seconds
        } else {
            0.0
        }
    }
}

/// SmolLM2 (or another llama GGUF) as a [`ChatModel`].
pub struct LocalGguf {
    model: Mutex<ModelWeights>,
    tokenizer: Tokenizer,
    stop: Vec<u32>,
    name: String,
    device: Device,
    opts: LocalOptions,
}

/// The ChatML prompt SmolLM2 was tuned on, ending where the assistant's answer starts.
pub fn chat_prompt(system: &str, user: &str) -> String {
    format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}

impl LocalGguf {
    /// `<cache>/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (fetched by
    /// `scripts/fetch_data.sh`).
    pub fn default_path() -> PathBuf {
        crate::config::cache_dir().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    /// Loads a GGUF file with default options.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::load_with(path, LocalOptions::default())
    }

    /// Loads a GGUF file.
    pub fn load_with(path: &Path, opts: LocalOptions) -> anyhow::Result<Self> {
        let mut file = std::fs::File::open(path).with_context(|| {
            format!(
                "{}: cannot open the GGUF model (run `bash scripts/fetch_data.sh models`?)",
                path.display()
            )
        })?;
        let content = gguf_file::Content::read(&mut file)
            .with_context(|| format!("{}: not a readable GGUF file", path.display()))?;
        let tokenizer = gguf_tokenizer(&content)
            .with_context(|| format!("{}: building the tokenizer", path.display()))?;
        let ids = special_ids(&content);
        let mut stop: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        stop.extend(ids.eos);
        stop.sort_unstable();
        stop.dedup();
        if stop.is_empty() {
            bail!("{}: the vocabulary has no end token", path.display());
        }
        let device = Device::Cpu;
        let model = ModelWeights::from_gguf(content, &mut file, &device)
            .with_context(|| format!("{}: loading the model weights", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase().replace('.', "-"))
            .unwrap_or_else(|| "gguf".into());
        let name = if opts.repeat_penalty != 1.0 {
            format!("{stem}+rp{}x{}", opts.repeat_penalty, opts.repeat_last_n)
        } else {
            stem
        };
        Ok(Self {
            model: Mutex::new(model),
            tokenizer,
            stop,
            name,
            device,
            opts,
        })
    }

    /// The tokenizer rebuilt from the GGUF metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Answers one request.
    pub fn generate(&self, req: &ChatRequest) -> anyhow::Result<Generation> {
        let prompt = chat_prompt(&req.system, &req.user);
        let enc = self
            .tokenizer
            .encode(prompt.as_str(), false)
            .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?;
        let ids = enc.get_ids().to_vec();
        if ids.len() + req.max_tokens > MAX_SEQ_LEN {
            bail!(
                "prompt of {} tokens plus {} new tokens exceeds the model's {MAX_SEQ_LEN}-token window",
                ids.len(),
                req.max_tokens
            );
        }
        let sampling = if req.temperature > 0.0 {
            Sampling::All {
                temperature: req.temperature as f64,
            }
        } else {
            Sampling::ArgMax
        };
        let mut lp = LogitsProcessor::from_sampling(req.seed, sampling);
        let mut model = self
            .model
            .lock()
            .map_err(|_| anyhow::anyhow!("the local model panicked in an earlier request"))?;
        model.clear_kv_cache();
        let t0 = Instant::now();
        let input = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, 0)?.squeeze(0)?;
        let prefill_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut out: Vec<u32> = Vec::new();
        let mut stopped = false;
        while out.len() < req.max_tokens {
            if self.opts.repeat_penalty != 1.0 && !out.is_empty() {
                let start = out.len().saturating_sub(self.opts.repeat_last_n);
                logits = candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    self.opts.repeat_penalty,
                    &out[start..],
                )?;
            }
            let next = lp.sample(&logits)?;
            if self.stop.contains(&next) {
                stopped = true;
                break;
            }
            out.push(next);
            if out.len() == req.max_tokens {
                break;
            }
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            logits = model
                .forward(&input, ids.len() + out.len() - 1)?
                .squeeze(0)?;
        }
        let decode_seconds = t1.elapsed().as_secs_f64();
        model.clear_kv_cache();
        drop(model);
        let text = self
            .tokenizer
            .decode(&out, true)
            .map_err(|e| anyhow::anyhow!("decoding the answer: {e}"))?;
        Ok(Generation {
            text,
            prompt_tokens: ids.len(),
            generated_tokens: out.len(),
            stopped,
            prefill_seconds,
            decode_seconds,
        })
    }
}

impl ChatModel for LocalGguf {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn complete_batch(&self, requests: &[ChatRequest]) -> Vec<anyhow::Result<String>> {
        requests
            .iter()
            .map(|r| self.generate(r).map(|g| g.text))
            .collect()
    }
}
