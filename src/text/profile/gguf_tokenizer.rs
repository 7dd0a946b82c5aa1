//! A `tokenizers::Tokenizer` built from GGUF metadata, for models that ship no
//! tokenizer.json (SmolLM2's GGUF): GPT-2 style byte-level BPE from
//! `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, control and user-defined tokens
//! (`tokenizer.ggml.token_type` 3 and 4, e.g. `<|im_start|>`) registered as special
//! tokens. `tokenizer.ggml.pre = "smollm"` (like llama.cpp) splits digits one by one
//! before the GPT-2 byte-level split.

use anyhow::{bail, Context};
use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Special token ids read from GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
}

fn strings(content: &Content, key: &str) -> anyhow::Result<Vec<String>> {
    let v = content
        .metadata
        .get(key)
        .with_context(|| format!("GGUF metadata has no `{key}`"))?;
    v.to_vec()
        .with_context(|| format!("GGUF `{key}` is not an array"))?
        .iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .with_context(|| format!("GGUF `{key}` holds a non-string"))
        })
        .collect()
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(*x as i64),
        Value::I8(x) => Some(*x as i64),
        Value::U16(x) => Some(*x as i64),
        Value::I16(x) => Some(*x as i64),
        Value::U32(x) => Some(*x as i64),
        Value::I32(x) => Some(*x as i64),
        Value::U64(x) => Some(*x as i64),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

/// Bos/eos ids from `tokenizer.ggml.bos_token_id` / `eos_token_id`.
pub fn special_ids(content: &Content) -> SpecialIds {
    let get = |k: &str| content.metadata.get(k).and_then(int).map(|x| x as u32);
    SpecialIds {
        bos: get("tokenizer.ggml.bos_token_id"),
        eos: get("tokenizer.ggml.eos_token_id"),
    }
}

/// Builds the tokenizer of a GGUF file (`tokenizer.ggml.model = "gpt2"` only).
pub fn gguf_tokenizer(content: &Content) -> anyhow::Result<Tokenizer> {
    let model = content
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        bail!("GGUF tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)");
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges_raw = strings(content, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .context("GGUF `tokenizer.ggml.token_type` is not an array")?
            .iter()
            .map(|x| int(x).unwrap_or(1) as i32)
            .collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = merges_raw
        .iter()
        .enumerate()
        .map(|(k, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| format!("GGUF merge {k} `{m}` is not `left right`"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow::anyhow!("building BPE from GGUF metadata: {e}"))?;
    let mut tok = Tokenizer::new(bpe);
    let pre = content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    let byte_level = ByteLevel::new(false, true, true);
    if pre == "smollm" {
        tok.with_pre_tokenizer(Some(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ])));
    } else {
        tok.with_pre_tokenizer(Some(byte_level));
    }
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| anyhow::anyhow!("registering special tokens: {e}"))?;
    Ok(tok)
}
