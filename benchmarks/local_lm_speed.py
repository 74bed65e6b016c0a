"""Benchmark: how fast the embedded LLM reads prompts and writes answers on this machine.

A dry run's time estimate (``clinsynth.llm.pricing.LOCAL_PROMPT_TOKENS_PER_S`` and
``LOCAL_COMPLETION_TOKENS_PER_S``) is made of these two rates:

- prompt: ``--n`` prompts of public-corpus sentences, each different from its first token
  (nothing cached), answered with one token: prompt tokens / seconds;
- completion: the last of those prompts again (now cached by the server) with a long answer:
  completion tokens / seconds.

    python benchmarks/local_lm_speed.py --n 3
"""

from __future__ import annotations

from clinsynth.env import apply_environment_defaults

apply_environment_defaults()  # a command: the offline environment before the imports below load litellm

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from clinsynth.data.corpus import iter_sentences
from clinsynth.data.records import now_iso
from clinsynth.data.task import load_task
from clinsynth.llm.lm import local_endpoint, local_server
from clinsynth.report import format_table, write_section

HEADING = "## Embedded LLM speed"


def complete(api_base: str, prompt: str, max_tokens: int) -> tuple[float, int, int]:
    """(seconds, prompt tokens, completion tokens) of one request to the embedded server."""
    import litellm

    started = time.perf_counter()
    response = litellm.completion(model=local_endpoint().model, api_base=api_base, api_key="local",
                                  messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                  temperature=0.0, caching=False)  # fmt: skip
    seconds = time.perf_counter() - started
    return seconds, response.usage.prompt_tokens, response.usage.completion_tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3, help="uncached prompts to time")
    parser.add_argument("--sentences", type=int, default=60, help="corpus sentences per prompt")
    parser.add_argument("--answer-tokens", type=int, default=160, help="completion tokens to time")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = parser.parse_args(argv)

    task = load_task(None)
    sentences = [s.text for s in iter_sentences(task.corpus)][: args.n * args.sentences]
    api_base = local_server().api_base
    assert api_base is not None
    complete(api_base, "Say OK.", 1)  # warm-up: the model is loaded and its first batch compiled
    prompt_seconds = prompt_tokens = 0.0
    prompt = ""
    for k in range(args.n):
        chunk = sentences[k * args.sentences : (k + 1) * args.sentences]
        prompt = f"Request {k}: summarise these clinical sentences.\n" + "\n".join(chunk)
        seconds, tokens, _ = complete(api_base, prompt, 1)
        prompt_seconds += seconds
        prompt_tokens += tokens
    seconds, _, completion_tokens = complete(api_base, prompt + "\nWrite a long, detailed summary.", args.answer_tokens)
    rows = [
        ["prompt (uncached)", int(prompt_tokens), round(prompt_seconds, 1), round(prompt_tokens / prompt_seconds, 1)],
        ["completion", completion_tokens, round(seconds, 1), round(completion_tokens / seconds, 1)],
    ]
    table = format_table(["part", "tokens", "seconds", "tokens/s"], rows)
    body = "\n".join([
        f"Measured {now_iso()} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores: the "
        "embedded Qwen2.5-Coder-1.5B-Instruct Q4_K_M served by xllamacpp "
        f"(`python benchmarks/local_lm_speed.py --n {args.n}`). The completion's prompt was cached by the server, "
        "so its time is almost all generation. A dry run's time estimate uses these rates "
        "(`clinsynth.llm.pricing`).",
        "",
        table,
    ])  # fmt: skip
    write_section(args.out, HEADING, body)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
