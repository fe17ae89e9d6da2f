#!/usr/bin/env python3
"""Writes a tiny random-weight llama model as GGUF, for a real llama-server in the tests.

    make-tiny-gguf.py [--vocab VOCAB.gguf] OUT.gguf

The tokenizer is copied, key by key, from a vocab-only GGUF of llama.cpp (default
.tools/ggml-vocab-llama-spm.gguf: LLaMA's SentencePiece vocabulary, 32000 tokens); the weights
are random (fixed seed, so the file is the same bytes every time), all f32: n_embd 64, 2 layers,
4 heads, FFN 128, context 256, about 17 MB (mostly the 32000 x 64 embedding and output
matrices). It writes nonsense, but through the real tokenizer, so prompt token counts are real.
Needs llama.cpp's gguf-py (PYTHONPATH, else .tools/gguf-py) and numpy.
scripts/install-llama-server.sh runs it to make .tools/tiny-llama.gguf."""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
try:
    import gguf
except ImportError:
    sys.path.insert(0, str(ROOT / ".tools" / "gguf-py"))
    import gguf

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX = 256
SEED = 20240601


def copy_tokenizer(vocab_path: Path, writer: "gguf.GGUFWriter") -> int:
    """Copies every tokenizer.* key of the vocab GGUF; returns the vocabulary size."""
    reader = gguf.GGUFReader(vocab_path)
    n_vocab = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub_type = field.types[-1]
            if sub_type == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]) for i in field.data]  # the raw bytes, as they are
            else:
                value = field.contents()
            writer.add_key_value(key, value, vtype, sub_type=sub_type)
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            writer.add_key_value(key, field.contents(), vtype)
    if not n_vocab:
        raise SystemExit(f"{vocab_path}: no tokenizer.ggml.tokens")
    return n_vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--vocab", type=Path, default=ROOT / ".tools" / "ggml-vocab-llama-spm.gguf")
    args = parser.parse_args()

    writer = gguf.GGUFWriter(None, "llama")
    writer.add_name("tiny-llama-random")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    n_vocab = copy_tokenizer(args.vocab, writer)
    writer.add_vocab_size(n_vocab)

    rng = np.random.default_rng(SEED)

    def weight(*shape: int) -> np.ndarray:  # numpy order: (rows = output features, columns = input features)
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    head_dim = N_EMBD // N_HEAD
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(N_HEAD * head_dim, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(N_EMBD, N_HEAD * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    writer.write_header_to_file(path=tmp)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(args.out)  # never a half-written model at OUT
    print(f"make-tiny-gguf: {args.out} ({args.out.stat().st_size} bytes, {n_vocab} tokens)", file=sys.stderr)


if __name__ == "__main__":
    main()
