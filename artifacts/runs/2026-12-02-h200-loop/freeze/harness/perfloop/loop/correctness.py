"""The bundled engine's correctness command, run by VALIDATE in a candidate's worktree.

`python -m perfloop.loop.correctness --config engine.yaml --reference REF` checks that greedy
outputs on the reference prompts equal the frozen reference, and that toggling prefix caching
and chunked prefill does not change them. It prints one CorrectnessReport JSON line and exits
0 only when every check passes. `--write-reference REF` (at FREEZE) writes the reference;
with `--workload WORKLOAD.json` (the loop's `{workload}`) its prompts include requests of the
frozen workload itself, spread over its prompt lengths and run as one batch, so a candidate
that drops work only at the workload's shapes is caught here and not only in measurement.
The loop runs it with the frozen harness and the measurement's environment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfloop.bench.targets import model_vocab_size
from perfloop.bench.workloads import WorkloadSpec, build_requests
from perfloop.engine.config import EngineConfig
from perfloop.engine.llm import LLM
from perfloop.engine.sampling_params import SamplingParams
from perfloop.ledger.records import CorrectnessReport, ValidationReference
from perfloop.ledger.store import atomic_write_model
from perfloop.loop.launch import load_engine_config

MAX_TOKENS = 12
WORKLOAD_PROMPTS = 6  # requests sampled from the workload: shortest, longest and evenly between


SHARED_PREFIX = "You are a helpful assistant. Answer the question in one clear sentence.\nQuestion: "
PROMPT_TEXTS = (
    SHARED_PREFIX + "What is the capital of France?",
    SHARED_PREFIX + "Why is the sky blue?",
    "The quick brown fox",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who every morning "
    "walked down to the harbour, checked his nets, and told the children stories about the storms",
)


def fixed_prompts(model: str) -> list[list[int]]:
    """Real-text prompts in the model's own tokens: two sharing a prefix, a short and a long one."""
    from perfloop.engine.models.config import ModelConfig
    from perfloop.engine.models.presets import resolve_model
    from perfloop.engine.tokenizer import load_tokenizer

    path = resolve_model(model)
    tok = load_tokenizer(path, ModelConfig.from_dir(path).vocab_size, None)
    return [tok.encode(text) for text in PROMPT_TEXTS]


def workload_prompts(workload: WorkloadSpec, vocab: int, count: int = WORKLOAD_PROMPTS) -> list[list[int]]:
    """Token prompts of the workload itself, from its shortest to its longest."""
    if workload.vocab_size is None:
        workload = workload.model_copy(update={"vocab_size": vocab})
    prompts = sorted((r.prompt for r in build_requests(workload) if isinstance(r.prompt, list)), key=len)
    if len(prompts) <= count:
        return [list(p) for p in prompts]
    picks = sorted({round(i * (len(prompts) - 1) / (count - 1)) for i in range(count)})
    return [list(prompts[i]) for i in picks]


def greedy(
    config: EngineConfig, prompts: list[list[int]], max_tokens: int = MAX_TOKENS, **override: object
) -> list[list[int]]:
    """Greedy outputs of every prompt (one batch) under `config` with some fields overridden."""
    fields = config.model_dump(exclude={"model"}) | override
    llm = LLM(config.model, **fields)
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    return [out.output_token_ids for out in llm.generate(prompts, params)]


def check(config: EngineConfig, reference: ValidationReference) -> CorrectnessReport:
    """Reference equality plus prefix-caching and chunking invariance."""
    prompts, n = reference.prompts, reference.max_tokens
    outputs = greedy(config, prompts, n)
    flipped = greedy(config, prompts, n, enable_prefix_caching=not config.enable_prefix_caching)
    chunked = greedy(config, prompts, n, enable_chunked_prefill=True, max_num_batched_tokens=16)
    checks = {
        "reference_outputs": outputs == reference.outputs and config.model == reference.model,
        "prefix_caching_invariance": flipped == outputs,
        "chunking_invariance": chunked == outputs,
    }
    details = {name: "ok" if ok else "outputs differ" for name, ok in checks.items()}
    if config.model != reference.model:
        details["reference_outputs"] = f"model {config.model} is not the frozen {reference.model}"
    return CorrectnessReport(passed=all(checks.values()), checks=checks, details=details)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m perfloop.loop.correctness")
    parser.add_argument("--config", type=Path, required=True, help="YAML EngineConfig of the target.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--reference", type=Path, help="Frozen reference outputs to compare with.")
    group.add_argument("--write-reference", type=Path, help="Write the reference outputs here.")
    parser.add_argument("--workload", type=Path, help="Frozen workload JSON to sample prompts from.")
    args = parser.parse_args(argv)
    config = load_engine_config(args.config)
    if args.write_reference:
        prompts = fixed_prompts(config.model)
        if args.workload:
            workload = WorkloadSpec.model_validate_json(args.workload.read_text())
            prompts += workload_prompts(workload, model_vocab_size(config.model))
        ref = ValidationReference(
            model=config.model, prompts=prompts, max_tokens=MAX_TOKENS, outputs=greedy(config, prompts)
        )
        atomic_write_model(args.write_reference, ref)
        print(ref.model_dump_json())
        return 0
    reference = ValidationReference.model_validate_json(args.reference.read_text())
    report = check(config, reference)
    print(report.model_dump_json())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
