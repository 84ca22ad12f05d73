"""GGUF -> Hugging Face folder, so Olive and the model builder can read a GGUF source.

Runs as ``python -m harness.build.convert GGUF OUT`` in a child process: torch and transformers stay out
of the pytest process, whose memory the suites measure.

transformers loads a GGUF model flagged as quantized and refuses to ``save_pretrained`` it, so we
rebuild a plain model of the same class from its config and copy the (dequantized) weights over.
"""

from __future__ import annotations

import sys
from pathlib import Path


def convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    print(f"loading {gguf}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    result = plain.load_state_dict(loaded.state_dict(), strict=True)
    print(f"weights copied: {result}", flush=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"saved Hugging Face folder to {out}", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m harness.build.convert MODEL.gguf OUT_FOLDER", file=sys.stderr)
        return 2
    convert_gguf(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
