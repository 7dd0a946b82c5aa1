//! A local chat model on the CPU: SmolLM2-135M-Instruct (or another llama-architecture
//! GGUF with a byte-level BPE vocabulary) run with candle-transformers'
//! `quantized_llama`, the tokenizer rebuilt from the GGUF metadata, the ChatML template
//! `<|im_start|>role\n...<|im_end|>\n`. Greedy decoding by default, seeded sampling when a
//! request has a temperature; generation stops at `<|im_end|>`, `<|endoftext|>` or the
//! token limit. Requests of a batch run one after another (one model, one KV cache).

use super::gguf_tokenizer::{gguf_tokenizer, special_ids};
use super::prompt::parse_summarization;
use crate::text::{ChatModel, ChatRequest};
use anyhow::{bail, Context};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
use tokenizers::Tokenizer;

/// The start of the answer SmolLM2 is given: the profile JSON's first key.
pub const DEFAULT_ANSWER_PREFIX: &str = "{\"summarization\": \"";

/// Decoding options of a [`LocalGguf`] that are not part of a [`ChatRequest`]. Options
/// other than the defaults are appended to the model name, hence change prompt hashes.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalOptions {
    /// Penalty on logits of recently generated tokens (1 = none; 1.1 keeps SmolLM2-135M
    /// from looping).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Dequantize the weights to f32 at load time (about 4x the memory: ~0.6 GB for
    /// SmolLM2-135M) so matrix products run through candle's dense gemm: measured here
    /// ~15x faster prefill and ~8x faster decoding than candle's Q4_1 kernels. `false`
    /// keeps the quantized kernels (8-bit activations, slightly different outputs; part
    /// of the model name).
    pub dequantize: bool,
    /// Text the assistant's turn starts with (written into the prompt, and put back in
    /// front of the answer), e.g. `{"summarization": "` to steer a small model into the
    /// JSON answer (the default: without it SmolLM2-135M mostly echoes the prompt).
    pub answer_prefix: String,
    /// Stop as soon as the answer holds a complete `"summarization"` string: the rest
    /// (the `reasoning`) is not kept in a profile, so writing it only costs time.
    pub stop_after_summarization: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            dequantize: true,
            answer_prefix: DEFAULT_ANSWER_PREFIX.into(),
            stop_after_summarization: true,
        }
    }
}

/// One generation with its timings.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Whether it stopped before the token limit (end token, or summarization complete).
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
        crate::cache::cache_dir().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
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
        let model = if opts.dequantize {
            let (content, mut buf) = dequantized(&content, &mut file, &device)
                .with_context(|| format!("{}: dequantizing the weights", path.display()))?;
            ModelWeights::from_gguf(content, &mut buf, &device)
        } else {
            ModelWeights::from_gguf(content, &mut file, &device)
        }
        .with_context(|| format!("{}: loading the model weights", path.display()))?;
        let mut name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase().replace('.', "-"))
            .unwrap_or_else(|| "gguf".into());
        let def = LocalOptions::default();
        if !opts.dequantize {
            name.push_str("+qmatmul");
        }
        if opts.answer_prefix != def.answer_prefix {
            name.push_str(&format!("+prefix{}", &short_hash(&opts.answer_prefix)));
        }
        if (opts.repeat_penalty, opts.repeat_last_n) != (def.repeat_penalty, def.repeat_last_n) {
            name.push_str(&format!(
                "+rp{}x{}",
                opts.repeat_penalty, opts.repeat_last_n
            ));
        }
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

    /// Whether prefix + `out` already holds a closed `"summarization"` string.
    fn summary_done(&self, out: &[u32]) -> anyhow::Result<bool> {
        let last = self
            .tokenizer
            .id_to_token(out[out.len() - 1])
            .unwrap_or_default();
        if !last.contains('"') {
            return Ok(false);
        }
        let text = self
            .tokenizer
            .decode(out, true)
            .map_err(|e| anyhow::anyhow!("decoding the answer: {e}"))?;
        Ok(parse_summarization(&(self.opts.answer_prefix.clone() + &text)).is_some())
    }

    /// Answers one request.
    pub fn generate(&self, req: &ChatRequest) -> anyhow::Result<Generation> {
        let prompt = chat_prompt(&req.system, &req.user) + &self.opts.answer_prefix;
        let enc = self
            .tokenizer
            .encode(prompt.as_str(), false)
            .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?;
        let ids = enc.get_ids().to_vec();
        if ids.len() + req.max_tokens > MAX_SEQ_LEN {
            bail!(
                "prompt of {} tokens plus {} new tokens exceeds the model's {MAX_SEQ_LEN}-token \
                 window (list fewer items per user: ProfileOptions::max_user_items)",
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
            if self.opts.stop_after_summarization && self.summary_done(&out)? {
                stopped = true;
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
        let text = self.opts.answer_prefix.clone()
            + &self
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

/// First 8 hex digits of the sha256 of `s`.
fn short_hash(s: &str) -> String {
    super::prompt::prompt_hash(s, "", "", "")[..8].to_string()
}

/// The same model with every quantized tensor stored as f32, as an in-memory GGUF file
/// (`quantized_llama` turns f32 weights into dense matrices).
fn dequantized<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    device: &Device,
) -> anyhow::Result<(gguf_file::Content, Cursor<Vec<u8>>)> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let q = content.tensor(reader, name, device)?;
        let q = match q.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => q,
            _ => QTensor::quantize(&q.dequantize(device)?, GgmlDType::F32)?,
        };
        tensors.push(q);
    }
    // The model only needs the architecture keys, not the vocabulary.
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("tokenizer."))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let named: Vec<(&str, &QTensor)> = names
        .iter()
        .map(|n| n.as_str())
        .zip(tensors.iter())
        .collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &metadata, &named)?;
    drop(tensors);
    buf.set_position(0);
    let content = gguf_file::Content::read(&mut buf)?;
    Ok((content, buf))
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
