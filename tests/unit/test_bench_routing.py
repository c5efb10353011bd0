"""bench/routing.py's pure parts: the request sequences each arm sends."""

from __future__ import annotations

import json
import random

from bench import routing as BR


def test_multi_turn_sequence_grows_and_is_interleaved():
    seq = BR.multi_turn_requests("salt", random.Random(1))
    assert len(seq) == BR.SESSIONS * BR.TURNS and BR.SESSIONS % 2 == 1  # odd: no accidental RR affinity
    assert sum(later for later, _ in seq) == BR.SESSIONS * (BR.TURNS - 1)
    first, second_turn = seq[0][1], seq[BR.SESSIONS][1]  # session 0, turns 0 and 1
    assert second_turn[: len(first)] == first and len(second_turn) == len(first) + 2
    assert seq[1][1][0]["content"] != first[0]["content"]  # the next request is another session
    assert all(msgs[0]["content"].startswith("salt") for _, msgs in seq)


def test_same_sizes_different_text_per_arm():
    a = BR.multi_turn_requests("lc-x", random.Random("w"))
    b = BR.multi_turn_requests("px-x", random.Random("w"))
    assert [len(m) for _, m in a] == [len(m) for _, m in b]
    assert a[0][1][0]["content"] != b[0][1][0]["content"]


def test_shared_system_and_no_reuse():
    ss = BR.shared_system_requests("s", random.Random(2))
    assert len({m[0]["content"] for _, m in ss}) == 1 and [c for c, _ in ss].count(False) == 1
    nr = BR.no_reuse_requests("s", random.Random(3))
    assert len({m[0]["content"][:40] for _, m in nr}) == BR.NO_REUSE


def test_model_dir_keeps_the_tokenizer_and_sets_the_architecture(tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "config.json").write_text(json.dumps({"hidden_size": 128, "vocab_size": 300}))
    (tiny / "tokenizer.json").write_text("{}")
    out = BR.model_dir(tiny, tmp_path)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden_size"] == 1024 and cfg["num_hidden_layers"] == 8 and cfg["vocab_size"] == 300
    assert (out / "tokenizer.json").exists()
