"""Build a tiny Llama model directory offline, for real vLLM with `--load-format dummy` (random weights).

Runs INSIDE the vLLM venv (it needs `tokenizers` and `transformers`, which vLLM brings):

    "$VENV/bin/python" tests/real_vllm/tiny_model.py OUTDIR

Writes a byte-level BPE tokenizer (trained here on a few lines of text, with a chat template) and a
`config.json` for LlamaForCausalLM: hidden 128, intermediate 256, 2 layers, 2 heads, 1 KV head,
head_dim 64 (head_dim 16 boots "healthy" and dies on the first request: unsupported CPU attention
config), vocab = tokenizer size, max_position_embeddings 2048, float32. No weights: vLLM makes them.
Deterministic; the harness caches the result keyed by a hash of this file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "vLLM serves large language models with an OpenAI compatible API.",
    "Hello! How can I help you today? Please answer briefly.",
    "The stack renders command lines, health checks, metrics and a front proxy.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation: , . ; : ! ? ' \" ( ) [ ] { } - _ / \\ @ # $ % & * + = < >",
    "user assistant system tool: say this is a test, reply with one word.",
]

SPECIAL = ["<s>", "</s>", "<unk>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]

# Plain-string content only (what the OpenAI server hands over for text messages).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}{{ message['content'] }}{{ eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

VOCAB_TARGET = 512


def build(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        special_tokens=SPECIAL,
        # all 256 byte symbols: any text (and any random token id decoded) round-trips
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=2048,
        chat_template=CHAT_TEMPLATE,
    )
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))

    vocab = len(fast)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": fast.convert_tokens_to_ids("<s>"),
        "eos_token_id": fast.convert_tokens_to_ids("</s>"),
        "pad_token_id": fast.convert_tokens_to_ids("<pad>"),
        "torch_dtype": "float32",
        "use_cache": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": config["bos_token_id"],
                "eos_token_id": config["eos_token_id"],
                "pad_token_id": config["pad_token_id"],
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )

    # Self-check: the saved directory loads back with its chat template.
    from transformers import AutoTokenizer

    back = AutoTokenizer.from_pretrained(str(out))
    prompt = back.apply_chat_template(
        [{"role": "user", "content": "Say this is a test"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|assistant|>"), prompt
    assert len(back) == vocab, (len(back), vocab)
    assert back.decode(back.encode("héllo wörld ✓", add_special_tokens=False)) == "héllo wörld ✓"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = Path(argv[1])
    build(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
