#!/usr/bin/env python3
"""All-MiniLM-L6-v2 sentence embeddings: the independent reference that the host's native
embedder (host/src/minilm.rs) is checked against.

Usage: minilm_reference.py <model-dir>   (reads a JSON array of strings on stdin and prints a
JSON array of embeddings on stdout). <model-dir> holds the Hugging Face release's
config.json, tokenizer.json and model.safetensors.

This is BERT written out from the architecture in numpy, with no torch, transformers or
sentence-transformers. Each text is tokenized and run ALONE, in float64, with no padding, so
batching and padding can't affect the result. The vector is the mean over the text's tokens,
L2-normalised. Run it with tests/tools.sh's .venv-reference.
"""
import json
import math
import os
import sys

# One BLAS thread: the matrices are tiny, and idle OpenBLAS threads spinning on a busy machine
# made a run of ten sentences take seconds instead of a fraction of one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402 (after the thread setting, which it reads on import)
from safetensors.numpy import load_file
from tokenizers import Tokenizer

erf = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased, as torch computes it
    return (x - mean) / np.sqrt(var + eps) * w + b


def linear(x, weights, name):
    # Weights are stored [out, in].
    return x @ weights[name + ".weight"].T + weights[name + ".bias"]


def embed(ids, type_ids, weights, config):
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    head_size = config["hidden_size"] // heads
    n = len(ids)

    x = (weights["embeddings.word_embeddings.weight"][ids]
         + weights["embeddings.position_embeddings.weight"][np.arange(n)]
         + weights["embeddings.token_type_embeddings.weight"][type_ids])
    x = layer_norm(x, weights["embeddings.LayerNorm.weight"],
                   weights["embeddings.LayerNorm.bias"], eps)

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        # [n, hidden] -> [heads, n, head_size]
        q, k, v = (linear(x, weights, p + "attention.self." + m)
                   .reshape(n, heads, head_size).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, heads * head_size)
        x = layer_norm(x + linear(context, weights, p + "attention.output.dense"),
                       weights[p + "attention.output.LayerNorm.weight"],
                       weights[p + "attention.output.LayerNorm.bias"], eps)

        h = linear(x, weights, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))  # exact (erf) GELU
        x = layer_norm(x + linear(h, weights, p + "output.dense"),
                       weights[p + "output.LayerNorm.weight"],
                       weights[p + "output.LayerNorm.bias"], eps)

    pooled = x.mean(0)  # every token is the text's own: there is no padding to mask
    return pooled / np.linalg.norm(pooled)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: minilm_reference.py <model-dir>  < texts.json")
    model_dir = sys.argv[1]
    with open(f"{model_dir}/config.json") as f:
        config = json.load(f)
    weights = {name: t.astype(np.float64)
               for name, t in load_file(f"{model_dir}/model.safetensors").items()}
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tokenizer.no_padding()  # the file pads to 128; its truncation to 128 tokens is kept

    out = []
    for text in json.load(sys.stdin):
        enc = tokenizer.encode(text, add_special_tokens=True)
        out.append(embed(np.array(enc.ids), np.array(enc.type_ids), weights, config).tolist())
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
