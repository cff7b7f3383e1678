"""NAS-Bench-360's FSD50K task: 1-second audio chunks -> 96-band log-mel spectrograms.

Files (NAS-Bench-360's audio.zip, the FSD50K chunk manifests of its baseline code):

    chunks/tr.csv, chunks/val.csv, chunks/eval.csv   CSV with columns files, labels, ext:
        a WAV chunk's path, its clip's comma-separated label names, and the clip id (kept
        as context "clip", which the paper's per-clip mAP needs)
    chunks/lbl_map.json                               {label name: column}, 200 labels
    the WAV chunks                                    mono PCM, 22,050 Hz, 1 s each

A listed path is tried as given (if absolute), then relative to the task directory, then
under <dir>/audio/, then as <dir>/<parent>/<file>.

Features follow the reference's "melspectrogram" parser: a power mel spectrogram with
n_fft 1920, a 661-sample (30 ms) Hann window, hop 220 (10 ms), 96 HTK-scale bands from 0 Hz to
Nyquist, no filter normalisation (torchaudio's MelSpectrogram defaults), then decibels
(10 log10, floor 1e-10, clipped 80 dB below the maximum: librosa's power_to_db), minus the
example's mean; chunks shorter than 1 s are tiled to 1 s, and the 101 frames are padded
(with the minimum) or centre-cropped to exactly 101. -> (N, 1, 96, 101) float32 and (N, 200)
float32 0/1. Computed here with torch, so neither torchaudio nor librosa is needed.

Every chunk is one example. The reference's evaluation, which averages the logits of a
clip's chunks and scores mAP per clip, is the metric "one_minus_map_per_clip" (it reads each
chunk's clip from the context); "one_minus_map" scores every chunk on its own (orca's earlier
number). With ORCA_FSD50K_MAX_EXAMPLES the subset is of chunks, so a clip may keep only some
of its chunks. Not reproduced: training-time mixing with background noise and SpecAugment,
and the reference's training on one random chunk per clip per epoch.
"""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import torch

from orca.data.benchmarks import (
    benchmark_data_dir,
    example_limit,
    missing_files_error,
    require,
    subset,
)
from orca.data.tasks import RawTask

SAMPLE_RATE = 22050
N_FFT = 1920
WIN_LENGTH = int(SAMPLE_RATE * 0.03)  # 661
HOP_LENGTH = int(SAMPLE_RATE * 0.01)  # 220
N_MELS = 96
FRAMES = 101
TOP_DB = 80.0
MANIFESTS = ("tr.csv", "val.csv", "eval.csv")


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS
) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular HTK-scale filters from 0 Hz to Nyquist, unnormalised."""
    bins = np.linspace(0.0, sample_rate // 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.float64(sample_rate / 2)), n_mels + 2))
    widths = np.diff(edges)
    offsets = edges[None, :] - bins[:, None]  # (bins, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class LogMel:
    """Waveform (samples,) at 22,050 Hz -> (96, 101) mean-centred log-mel spectrogram."""

    def __init__(self) -> None:
        self.filters = torch.from_numpy(mel_filterbank())
        self.window = torch.hann_window(WIN_LENGTH)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(audio) == 0:
            raise ValueError("empty audio chunk")
        if len(audio) < SAMPLE_RATE:
            audio = np.tile(audio, SAMPLE_RATE // len(audio) + 1)[:SAMPLE_RATE]
        spectrum = torch.stft(
            torch.from_numpy(audio),
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            win_length=WIN_LENGTH,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        mel = self.filters.T @ spectrum.abs().pow(2)  # (96, frames)
        decibels = 10.0 * torch.log10(mel.clamp_min(1e-10))
        decibels = torch.maximum(decibels, decibels.max() - TOP_DB)
        features = (decibels - decibels.mean()).numpy()
        frames = features.shape[1]
        if frames < FRAMES:
            before = (FRAMES - frames) // 2
            pad = ((0, 0), (before, FRAMES - frames - before))
            features = np.pad(features, pad, constant_values=features.min())
        elif frames > FRAMES:
            start = (frames - FRAMES) // 2
            features = features[:, start : start + FRAMES]
        return features.astype(np.float32)


def read_wav(path: Path) -> np.ndarray:
    """Mono float audio in [-1, 1) from a PCM WAV file at 22,050 Hz."""
    with wave.open(str(path), "rb") as handle:
        rate, width, channels = handle.getframerate(), handle.getsampwidth(), handle.getnchannels()
        raw = handle.readframes(handle.getnframes())
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz")
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        samples = (np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)).astype(
            np.float32
        )
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        samples = np.frombuffer(raw, dtype=f"<{np.dtype(dtype).str[1:]}").astype(np.float32)
        samples /= float(2 ** (8 * width - 1))
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    return samples.reshape(-1, channels).mean(axis=1)


def _resolve(root: Path, listed: str) -> Path:
    path = Path(listed)
    candidates = [path] if path.is_absolute() else []
    relative = Path(*path.parts[1:]) if path.is_absolute() else path
    candidates += [root / relative, root / "audio" / relative]
    candidates += [root / path.parent.name / path.name, root / path.name]
    return next((c for c in candidates if c.is_file()), candidates[0])


def read_manifest(path: Path) -> list[tuple[str, list[str], str]]:
    """(chunk file, its clip's label names, clip id) per row of a chunk manifest."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"files", "labels", "ext"} <= set(rows[0]):
        raise ValueError(
            f"{path}: expected columns files, labels, ext (the clip id); got {sorted(rows[0])}"
        )
    blank = [i + 2 for i, row in enumerate(rows) if not (row["ext"] or "").strip()]
    if blank:
        raise ValueError(f"{path}: line(s) {blank[:5]} have no clip id in column ext")
    return [
        (row["files"], [lbl for lbl in row["labels"].split(",") if lbl], row["ext"].strip())
        for row in rows
    ]


def load_fsd50k(directory: str | Path | None = None, seed: int = 0) -> RawTask:
    task = "fsd50k"
    root = Path(directory).expanduser() if directory is not None else benchmark_data_dir(task)
    meta = root / "chunks"
    paths = require(task, *(meta / name for name in (*MANIFESTS, "lbl_map.json")))
    with open(paths[-1]) as handle:
        columns: dict[str, int] = json.load(handle)
    names = [""] * len(columns)
    for name, column in columns.items():
        names[column] = name
    features = LogMel()
    arrays, clips = [], []
    for manifest in paths[:3]:
        rows = read_manifest(manifest)
        rows = [rows[k] for k in subset(len(rows), example_limit(task), seed)]
        files = [_resolve(root, f) for f, _, _ in rows]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise missing_files_error(task, missing[:5])
        x = np.zeros((len(rows), 1, N_MELS, FRAMES), dtype=np.float32)
        y = np.zeros((len(rows), len(columns)), dtype=np.float32)
        for i, (path, (_, labels, _)) in enumerate(zip(files, rows, strict=True)):
            x[i, 0] = features(read_wav(path))
            unknown = [lbl for lbl in labels if lbl not in columns]
            if unknown:
                raise ValueError(f"{manifest}: label(s) {unknown} are not in {paths[-1]}")
            y[i, [columns[lbl] for lbl in labels]] = 1.0
        arrays.append((x, y))
        clips.append(np.unique([clip for _, _, clip in rows], return_inverse=True)[1])
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = arrays
    return RawTask(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        source=str(root),
        version="FSD50K 1-s chunks via NAS-Bench-360; log-mel 96 x 101",
        label_names=tuple(names),
        context={
            split: {"clip": codes}
            for split, codes in zip(("train", "validation", "test"), clips, strict=True)
        },
    )
