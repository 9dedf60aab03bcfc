#!/usr/bin/env python3
"""Expected logits of Hugging Face transformers for scaled-down models of each family rbee runs.

The independent oracle of tests/engine/oracle_test.cpp. For each family this builds a small
model from a config of the real family (scaled down), fills every weight from a counter-based
generator that the C++ test reproduces bit for bit (so no weights are checked in), runs a
prompt through transformers in float32 and writes tests/engine/data/oracle/<family>.json:
the config, the weights' names/shapes/generator parameters, the prompt, the logits of chosen
positions and a greedy continuation with the top-2 gap of each step.

The C++ test writes the same weights as config.json + model.safetensors, converts them with
`rbee-engine convert --type f32`, runs the engine on the CPU and compares. The mixtures of
experts come out of transformers 5 with a layer's experts fused into two 3-D parameters
(model.layers.N.mlp.experts.gate_up_proj and .down_proj, the router at mlp.gate); `convert`
reads that layout as well as the older one parameter per expert. Their experts run through
transformers' per-expert loop ("eager"), the readable definition, not its grouped kernels.

Needs torch and transformers (the GPU machine has both; the CPU works too, only slower):
    python3 tests/engine/oracle/make_oracle.py [--out tests/engine/data/oracle] [--device cuda]
        [--families mixtral qwen2moe qwen3moe]
"""
import argparse
import json
import os
import struct

import torch
import transformers

MASK64 = (1 << 64) - 1

# Sliding layers see the 16 latest positions; the prompt is longer, so windows matter.
WINDOW = 16
PROMPT = [3 + (i * 37) % 500 for i in range(48)]
LOGIT_POSITIONS = [0, 5, 11, 15, 16, 17, 23, 31, 39, 47]
N_GREEDY = 16

COMMON = dict(
    vocab_size=512,  # rbee-engine synth's byte vocabulary: the C++ test copies it
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    pad_token_id=0,  # some defaults (phi3's 32000) lie outside the small vocabulary
    bos_token_id=1,
    eos_token_id=2,
)

FAMILIES = {
    "llama": dict(model_type="llama", rope_theta=10000.0, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", rope_theta=1000000.0, tie_word_embeddings=False),
    "qwen3": dict(model_type="qwen3", head_dim=32, rope_theta=1000000.0, tie_word_embeddings=True),
    "gemma2": dict(
        model_type="gemma2",
        head_dim=32,
        query_pre_attn_scalar=32,
        rope_theta=10000.0,
        sliding_window=WINDOW,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
    ),
    # LongRoPE: the original context (128) holds the whole prompt, so both sides rotate with
    # the short factors; cos and sin are scaled by the attention factor of a 4x extension.
    "phi3": dict(
        model_type="phi3",
        rope_theta=10000.0,
        max_position_embeddings=512,
        original_max_position_embeddings=128,
        rope_scaling={
            "type": "longrope",
            "short_factor": [1.0 + 0.05 * i for i in range(8)],
            "long_factor": [1.5 + 0.25 * i for i in range(8)],
        },
        tie_word_embeddings=False,
    ),
    # Mixtures of experts: 4 experts, 2 per token; Mixtral and Qwen3-MoE renormalise the two
    # weights, Qwen2-MoE keeps them and adds its shared expert, gated per token by a sigmoid.
    "mixtral": dict(
        model_type="mixtral",
        rope_theta=1000000.0,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=None,
        tie_word_embeddings=False,
    ),
    "qwen2moe": dict(
        model_type="qwen2_moe",
        rope_theta=1000000.0,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=128,
        norm_topk_prob=False,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        use_sliding_window=False,
        tie_word_embeddings=False,
    ),
    "qwen3moe": dict(
        model_type="qwen3_moe",
        head_dim=32,
        rope_theta=1000000.0,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        tie_word_embeddings=False,
    ),
    "gemma3": dict(
        model_type="gemma3_text",
        num_hidden_layers=6,  # one global layer among five sliding ones
        head_dim=32,
        query_pre_attn_scalar=32,
        rope_theta=1000000.0,
        rope_local_base_freq=10000.0,
        rope_scaling={"rope_type": "linear", "factor": 8.0},
        sliding_window=WINDOW,
        sliding_window_pattern=6,
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
    ),
}

MIXTURES_OF_EXPERTS = ("mixtral", "qwen2moe", "qwen3moe")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def generated_values(name, n, mean, scale):
    """mean + (2u - 1) * scale in float32, u from splitmix64 seeded by the name (oracle_test.cpp)."""
    state = fnv1a64(name)
    mean, scale = f32(mean), f32(scale)
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        u = (z >> 40) / float(1 << 24)
        out.append(f32(mean + f32((u * 2.0 - 1.0) * scale)))
    return out


def weight_params(name, family):
    """(mean, scale) of a weight: norms near their identity, matrices small."""
    if name.endswith("norm.weight"):
        # Gemma's norms multiply by 1 + w: their identity is w = 0.
        return (0.0 if family.startswith("gemma") else 1.0), 0.1
    if name.endswith("embed_tokens.weight"):
        return 0.0, 0.5
    if name.endswith(("block_sparse_moe.gate.weight", "mlp.gate.weight")):
        return 0.0, 1.0  # a wide router: rounding does not change which experts it picks
    return 0.0, 0.08


def build(family, device):
    cfg = dict(COMMON)
    cfg.update(FAMILIES[family])
    model_type = cfg.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    # Eager attention: soft-capping and sliding windows as the model's reference code has them;
    # eager experts likewise (transformers 5 otherwise picks its grouped kernels).
    implementations = dict(attn_implementation="eager")
    if family in MIXTURES_OF_EXPERTS:
        implementations["experts_implementation"] = "eager"
    model = transformers.AutoModelForCausalLM.from_config(
        config, torch_dtype=torch.float32, **implementations
    )
    tensors = []
    state = {}
    # Parameters only (no buffers), each once: a tied lm_head is the embedding.
    for name, p in model.named_parameters():
        mean, scale = weight_params(name, family)
        values = generated_values(name, p.numel(), mean, scale)
        state[name] = torch.tensor(values, dtype=torch.float32).reshape(p.shape)
        tensors.append({"name": name, "shape": list(p.shape), "mean": mean, "scale": scale})
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k == "lm_head.weight" for k in missing), missing
    return model.to(device).eval(), config, tensors


@torch.no_grad()
def run(model, device):
    ids = torch.tensor([PROMPT], device=device)
    logits = model(ids).logits[0].float().cpu()
    tokens, gaps = [], []
    seq = list(PROMPT)
    for _ in range(N_GREEDY):
        last = model(torch.tensor([seq], device=device)).logits[0, -1].float().cpu()
        top = torch.topk(last, 2)
        tokens.append(int(top.indices[0]))
        gaps.append(float(top.values[0] - top.values[1]))
        seq.append(tokens[-1])
    return logits, tokens, gaps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "oracle"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for family in args.families:
        model, config, tensors = build(family, args.device)
        logits, tokens, gaps = run(model, args.device)
        doc = {
            "family": family,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": args.device,
            "config": config.to_dict(),
            "tensors": tensors,
            "prompt": PROMPT,
            "logits": {str(p): [round(float(v), 6) for v in logits[p]] for p in LOGIT_POSITIONS},
            "greedy": tokens,
            "greedy_top2_gap": [round(g, 6) for g in gaps],
        }
        path = os.path.join(args.out, family + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
        print(f"{family}: wrote {path} (greedy {tokens[:8]}...)")


if __name__ == "__main__":
    main()
