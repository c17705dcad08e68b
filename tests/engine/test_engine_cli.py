"""The engine CLI, checkpoint loading variants and the tokenizer paths."""

from __future__ import annotations

import json

import torch
import transformers
from typer.testing import CliRunner

from perfloop.cli import app
from perfloop.engine.llm import LLM
from perfloop.engine.models.presets import materialize
from perfloop.engine.sampling_params import SamplingParams

runner = CliRunner()


def test_generate_json_output() -> None:
    args = ["--prompt-ids", "[[1, 2, 3], [4, 5]]", "--max-tokens", "6", "--ignore-eos", "--json"]
    result = runner.invoke(app, ["engine", "generate", "--model", "preset:tiny-qwen2", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [o["prompt_token_ids"] for o in data["outputs"]] == [[1, 2, 3], [4, 5]]
    assert all(len(o["output_token_ids"]) == 6 and o["finish_reason"] == "length" for o in data["outputs"])
    assert data["stats"]["generation_tokens"] == 12


def test_generate_names_the_bad_flag() -> None:
    result = runner.invoke(app, ["engine", "generate", "--model", "preset:tiny-qwen2", "--prompt", "x",
                                 "--max-tokens", "0"])  # fmt: skip
    assert result.exit_code == 2
    assert "max-tokens" in result.output


def test_materialize_sharded_loads_in_hf_and_engine(tmp_path) -> None:
    out = materialize("tiny-llama", tmp_path / "m", max_shard_bytes=200_000)
    assert (out / "model.safetensors.index.json").is_file()
    assert len(list(out.glob("*.safetensors"))) > 1
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    llm = LLM(str(out))
    ours = llm.generate([[1, 2, 3, 4]], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
    ref = hf.generate(
        torch.tensor([[1, 2, 3, 4]]), max_new_tokens=8, min_new_tokens=8, do_sample=False, eos_token_id=None
    )
    assert ours[0].output_token_ids == ref[0, 4:].tolist()


def test_hf_tokenizer_and_chat_template(tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    out = materialize("tiny-qwen3", tmp_path / "m")
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(["hello", "world", "!", "user", "assistant"])}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(out / "tokenizer.json"))
    template = (
        "{% for m in messages %}{{ m.role }} {{ m.content }} {% endfor %}"
        "{% if add_generation_prompt %}assistant{% endif %}"
    )
    (out / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    llm = LLM(str(out))
    assert llm.engine.tokenizer.encode("hello world !") == [1, 2, 3]
    chat = llm.engine.tokenizer.apply_chat_template([{"role": "user", "content": "hello"}])
    assert chat == "user hello assistant"
    assert llm.engine.tokenizer.encode(chat) == [4, 1, 5]


def test_byte_fallback_default_chat_template() -> None:
    llm = LLM("preset:tiny-qwen3")
    tok = llm.engine.tokenizer
    assert tok.decode(tok.encode("héllo")) == "héllo"
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "<|user|>\nhi\n<|assistant|>\n"


def test_presets_listed() -> None:
    result = runner.invoke(app, ["engine", "presets"])
    assert result.exit_code == 0
    for name in ("tiny-llama", "tiny-qwen2", "tiny-qwen3", "qwen3-0.6b", "llama-3.1-8b"):
        assert name in result.stdout
