"""Benchmark loaders on tiny files, written here in each benchmark's published format."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from orca.data.benchmark_tasks import PAPER_METRICS
from orca.data.benchmarks import benchmark_data_dir, read_npy, restricted_load, task_env_var
from orca.data.benchmarks.nb360_dense import read_mat_fields
from orca.data.tasks import get_task
from orca.metrics import METRICS


def psicov_protein_features(length: int, rng: np.random.Generator) -> dict:
    """One protein's feature pickle in the PSICOV release's layout, random values."""
    return {
        "seq": "A" * length,
        "ss": rng.random((3, length)),
        "pssm": rng.random((length, 22)),
        "sa": rng.random(length),
        "entropy": rng.random(length),
        "ccmpred": rng.random((length, length)),
        "freecon": rng.random((length, length)),
        "potential": rng.random((length, length)),
    }


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCA_DATA_DIR", str(tmp_path))
    return tmp_path


def _load(name: str):
    raw = get_task(name).loader()
    for x, y in ((raw.x_train, raw.y_train), (raw.x_test, raw.y_test)):
        assert x.dtype == np.float32 and len(x) == len(y) > 0
    return raw


def _classes(rng, n, k):
    return np.arange(n) % k if n >= k else rng.integers(0, k, n)


# ---------------------------------------------------------------- directories and errors
def test_data_dir_prefers_the_task_variable(data_dir, monkeypatch, tmp_path):
    assert task_env_var("nb360-darcy") == "ORCA_NB360_DARCY_DIR"
    assert benchmark_data_dir("nb360-darcy") == data_dir / "darcyflow"
    monkeypatch.setenv("ORCA_NB360_DARCY_DIR", str(tmp_path / "elsewhere"))
    assert benchmark_data_dir("nb360-darcy") == tmp_path / "elsewhere"
    assert benchmark_data_dir("openml-kc1") == data_dir / "openml"


def test_missing_file_names_the_path_and_the_variable(data_dir):
    with pytest.raises(FileNotFoundError) as error:
        get_task("ecg").loader()
    message = str(error.value)
    assert str(data_dir / "ecg" / "challenge2017.pkl") in message
    assert "ORCA_ECG_DIR" in message and "ORCA_DATA_DIR" in message


def test_pickles_holding_other_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data": print}))
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"), open(path, "rb") as f:
        restricted_load(f)
    np.save(tmp_path / "evil.npy", np.array([print], dtype=object), allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError):
        read_npy(tmp_path / "evil.npy")


# ---------------------------------------------------------------- point tasks
def test_cifar100_from_the_python_pickles_and_the_tarball(data_dir):
    rng = np.random.default_rng(0)
    folder = data_dir / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n in (("train", 10), ("test", 4)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
        }
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    names = [f"class{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}, protocol=2))
    raw = _load("cifar100")
    assert raw.x_train.shape == (10, 3, 32, 32) and raw.y_train.dtype == np.int64
    assert raw.label_names[3] == "class3" and abs(float(raw.x_train.mean())) < 2

    with tarfile.open(data_dir / "cifar100" / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-100-python")
    for member in folder.iterdir():
        member.unlink()
    assert np.array_equal(_load("cifar100").x_test, raw.x_test)


def test_spherical_from_the_gzip_pickle(data_dir):
    rng = np.random.default_rng(1)
    dataset = {
        split: {
            "images": rng.integers(0, 256, (n, 3, 60, 60)).astype(np.uint8),
            "labels": np.arange(n),
        }
        for split, n in (("train", 6), ("test", 3))
    }
    (data_dir / "spherical").mkdir()
    with gzip.open(data_dir / "spherical" / "s2_cifar100.gz", "wb") as handle:
        pickle.dump(dataset, handle)
    raw = _load("spherical")
    assert raw.x_train.shape == (6, 3, 60, 60) and raw.x_train.max() <= 1.0
    assert raw.y_test.tolist() == [0, 1, 2]


def test_ninapro_keeps_its_published_validation_split(data_dir):
    folder = data_dir / "ninapro"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for split, n in (("train", 8), ("val", 3), ("test", 4)):
        np.save(folder / f"ninapro_{split}.npy", rng.normal(size=(n, 52, 16)).astype(np.float32))
        np.save(folder / f"label_{split}.npy", _classes(rng, n, 18).astype(np.uint8))
    raw = _load("ninapro")
    assert raw.x_train.shape == (8, 1, 16, 52) and raw.x_val.shape == (3, 1, 16, 52)
    stored = np.load(folder / "ninapro_train.npy")
    assert np.array_equal(raw.x_train[0, 0], stored[0].T)


def test_ecg_windows_split_by_record(data_dir):
    rng = np.random.default_rng(3)
    labels = np.array(list("NAO~") * 10)
    records = [rng.normal(size=int(rng.integers(1200, 2400))) * 5 + 3 for _ in labels]
    (data_dir / "ecg").mkdir()
    with open(data_dir / "ecg" / "challenge2017.pkl", "wb") as handle:
        pickle.dump({"data": np.array(records, dtype=object), "label": labels}, handle)
    raw = _load("ecg")
    assert raw.x_train.shape[1:] == (1, 1000) and raw.x_val is not None and len(raw.x_val)
    assert set(raw.y_train.tolist()) <= {0, 1, 2, 3} and raw.label_names == ("N", "A", "O", "~")
    assert abs(float(raw.x_train.mean())) < 0.5  # records are standardised


def test_satellite_from_saved_dicts(data_dir):
    folder = data_dir / "satellite"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for split, n in (("train", 9), ("test", 4)):
        content = {"data": rng.normal(size=(n, 46)), "label": np.arange(n) % 24 + 1}
        np.save(folder / f"satellite_{split}.npy", content, allow_pickle=True)
    raw = _load("satellite")
    assert raw.x_train.shape == (9, 1, 46) and raw.y_train.min() == 0


def test_deepsea_transposes_to_channels_first(data_dir):
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        bases = rng.integers(0, 4, (n, 1000))
        arrays[f"x_{split}"] = np.eye(4, dtype=np.uint8)[bases]  # (n, 1000, 4)
        arrays[f"y_{split}"] = rng.integers(0, 2, (n, 36)).astype(np.uint8)
    (data_dir / "deepsea").mkdir()
    np.savez(data_dir / "deepsea" / "deepsea_filtered.npz", **arrays)
    raw = _load("deepsea")
    assert raw.x_train.shape == (6, 4, 1000) and raw.y_val.shape == (2, 36)
    assert raw.y_train.dtype == np.float32 and np.all(raw.x_test.sum(axis=1) == 1)


def test_example_cap_takes_a_seeded_subset(data_dir, monkeypatch):
    test_deepsea_transposes_to_channels_first(data_dir)
    monkeypatch.setenv("ORCA_DEEPSEA_MAX_EXAMPLES", "2")
    raw = get_task("deepsea").loader()
    assert len(raw.x_train) == len(raw.x_test) == 2


def _write_wav(path, seconds, rng, rate=22050):
    samples = (rng.normal(scale=0.2, size=int(rate * seconds)).clip(-1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


FSD_LABELS = ["Bark", "Music", "Speech"]


def _write_fsd50k(root: Path, rng, clips: dict[str, list[int]], header: str = "files,labels,ext"):
    """Manifests whose chunk i belongs to clip clips[manifest][i], labelled by the clip."""
    (root / "chunks").mkdir(parents=True)
    (root / "audio").mkdir()
    lbl_map = {n: i for i, n in enumerate(FSD_LABELS)}
    (root / "chunks" / "lbl_map.json").write_text(json.dumps(lbl_map))
    for manifest, clip_of in clips.items():
        lines = [header]
        for i, clip in enumerate(clip_of):
            name = f"{manifest[:-4]}_{i}.wav"
            _write_wav(root / "audio" / name, 0.6 if i == 0 else 1.0, rng)
            labels = f"{FSD_LABELS[clip % 3]},{FSD_LABELS[(clip + 1) % 3]}"
            lines.append(f'{name},"{labels}",{clip}' if "ext" in header else f'{name},"{labels}"')
        (root / "chunks" / manifest).write_text("\n".join(lines) + "\n")


def test_fsd50k_log_mel_chunks_and_their_clips(data_dir):
    clips = {"tr.csv": [0, 1, 2], "val.csv": [5], "eval.csv": [501, 502, 501, 502, 501]}
    _write_fsd50k(data_dir / "fsd50k", np.random.default_rng(6), clips)
    raw = _load("fsd50k")
    assert raw.x_train.shape == (3, 1, 96, 101) and raw.y_train.shape == (3, 3)
    assert raw.y_train[0].tolist() == [1.0, 1.0, 0.0] and raw.x_val.shape == (1, 1, 96, 101)
    assert np.allclose(raw.x_train.mean(axis=(1, 2, 3)), 0, atol=1e-3)
    assert raw.context["test"]["clip"].tolist() == [0, 1, 0, 1, 0]  # clips 501, 502
    assert raw.context["validation"]["clip"].tolist() == [0]
    # The paper's mAP averages each clip's chunk logits: clip 501 (chunks 0, 2, 4; labels
    # Bark, Music) and clip 502 (chunks 1, 3; Music, Speech). Music, on both clips, has no
    # negative and is skipped.
    logits = np.array([[0, 4, 1], [2, 0, 5], [0, -2, 1], [2, 0, -1], [3, 1, 1]], dtype=float)
    per_clip = np.array([logits[[0, 2, 4]].mean(0), logits[[1, 3]].mean(0)])
    clip_labels = raw.y_test[[0, 1]]
    assert clip_labels.tolist() == [[1, 1, 0], [0, 1, 1]]
    expected = 1 - average_precision_score(clip_labels[:, [0, 2]], per_clip[:, [0, 2]])
    metric = METRICS.get(PAPER_METRICS["fsd50k"])
    assert metric.score(logits, raw.y_test, raw.context["test"]) == pytest.approx(expected)


def test_fsd50k_clips_reach_the_split_files_and_score_the_default_metric(data_dir, tmp_path):
    from orca.data.arrow_io import read_split
    from orca.stages.ingest import ingest

    clips = {"tr.csv": [0, 1, 2], "val.csv": [5, 5], "eval.csv": [501, 502, 501, 502, 501]}
    _write_fsd50k(data_dir / "fsd50k", np.random.default_rng(6), clips)
    labels = FSD_LABELS + [f"other{k}" for k in range(197)]  # the task's 200 label columns
    lbl_map = json.dumps({name: k for k, name in enumerate(labels)})
    (data_dir / "fsd50k" / "chunks" / "lbl_map.json").write_text(lbl_map)
    assert get_task("fsd50k").metric == PAPER_METRICS["fsd50k"] == "one_minus_map_per_clip"
    splits = ingest("fsd50k", tmp_path / "splits", seed=0)["splits"]
    test = read_split(splits["test"]["path"])
    assert test.context["clip"].tolist() == [0, 1, 0, 1, 0]
    assert read_split(splits["validation"]["path"]).context["clip"].tolist() == [0, 0]
    # Scored per clip from the file's context: the mean logits of clips 501 and 502.
    # The 197 label columns no clip has are skipped, as is Music, which both clips have.
    logits = np.array([[0, 4, 1], [2, 0, 5], [0, -2, 1], [2, 0, -1], [3, 1, 1]], dtype=float)
    per_clip = np.array([logits[[0, 2, 4]].mean(0), logits[[1, 3]].mean(0)])
    expected = 1 - average_precision_score(test.y[[0, 1]][:, [0, 2]], per_clip[:, [0, 2]])
    logits = np.pad(logits, ((0, 0), (0, 197)))
    metric = METRICS.get(get_task("fsd50k").metric)
    assert metric.score(logits, test.y, test.context) == pytest.approx(expected)


def test_fsd50k_manifest_needs_the_clip_column(data_dir):
    clips = {"tr.csv": [0], "val.csv": [1], "eval.csv": [2]}
    _write_fsd50k(data_dir / "fsd50k", np.random.default_rng(6), clips, header="files,labels")
    with pytest.raises(ValueError, match=r"tr\.csv: expected columns files, labels, ext"):
        get_task("fsd50k").loader()


# ---------------------------------------------------------------- dense tasks
def test_darcy_from_matlab_v5_files(data_dir):
    from scipy.io import savemat

    rng = np.random.default_rng(7)
    (data_dir / "darcyflow").mkdir()
    for name, n in (("smooth1", 12), ("smooth2", 5)):
        fields = {"coeff": rng.choice([3.0, 12.0], (n, 11, 11)), "sol": rng.random((n, 11, 11))}
        savemat(data_dir / "darcyflow" / f"piececonst_r421_N1024_{name}.mat", fields)
    raw = _load("nb360-darcy")
    assert raw.x_train.shape == (11, 3, 3, 3) and raw.x_val.shape == (1, 3, 3, 3)
    assert raw.y_test.shape == (5, 1, 3, 3)
    assert np.allclose(raw.x_train[0, 1, 0], [0, 0.5, 1]) and np.allclose(
        raw.x_train[0, 2, :, 0], [0, 0.5, 1]
    )


def test_matlab_v73_fields_are_read_with_axes_reversed(tmp_path):
    h5py = pytest.importorskip("h5py")
    coeff = np.arange(4 * 6 * 6, dtype=np.float64).reshape(4, 6, 6)
    with h5py.File(tmp_path / "v73.mat", "w") as handle:
        handle["coeff"] = coeff.transpose(2, 1, 0)  # MATLAB's column-major storage
    read = read_mat_fields(tmp_path / "v73.mat", ("coeff",), rows=3, step=2)["coeff"]
    assert np.array_equal(read, coeff[:3, ::2, ::2])


def _write_psicov(root: Path, rng, proteins: dict[str, dict[str, int]]) -> dict:
    """deepcov/psicov lists, features and C-beta distance files; proteins: dataset -> id ->
    length. Returns id -> its (L, L) distance map (random, 0-30 A, not symmetric)."""
    maps = {}
    for dataset, ids in proteins.items():
        (root / dataset / "features").mkdir(parents=True)
        (root / dataset / "distance").mkdir(parents=True)
        (root / f"{dataset}.lst").write_text("\n".join(f"{i} extra" for i in ids) + "\n")
        for pdb, length in ids.items():
            features = psicov_protein_features(length, rng)
            (root / dataset / "features" / f"{pdb}.pkl").write_bytes(pickle.dumps(features))
            maps[pdb] = rng.random((length, length)) * 30
            entry = np.array([length, "A" * length, maps[pdb]], dtype=object)
            np.save(root / dataset / "distance" / f"{pdb}-cb.npy", entry, allow_pickle=True)
    return maps


def test_psicov_crops_and_tiles(data_dir):
    proteins = {"deepcov": {"1abc": 20, "2def": 20}, "psicov": {"3ghi": 20}}
    _write_psicov(data_dir / "protein", np.random.default_rng(8), proteins)
    raw = _load("psicov")
    assert raw.x_train.shape == (2, 57, 128, 128) and raw.y_test.shape == (1, 1, 128, 128)
    assert raw.y_train.min() >= 1.0 and raw.y_train.max() == 16.0
    assert np.allclose(raw.x_train[0, 0, 5, 5:25], raw.x_train[0, 0, 6, 5:25])  # ss row 0
    # A 30-pixel padded map fits one 128 crop: residue 0 sits 5 pixels in.
    expected = {"protein": [0, 1], "row_start": [-5, -5], "col_start": [-5, -5], "length": [20] * 2}
    assert {k: v.tolist() for k, v in raw.context["train"].items()} == expected


def long_range_mae8_by_loops(pred: np.ndarray, true: np.ndarray) -> float:
    """MAE8 of one protein, pair by pair as the references loop: j - i >= 24, true <= 8 A,
    predictions floored at 0.01 and the two triangles averaged."""
    errors = []
    for i in range(len(true)):
        for j in range(i + 24, len(true)):
            if true[i, j] <= 8.0:
                average = (max(pred[i, j], 0.01) + max(pred[j, i], 0.01)) / 2
                errors.append(abs(average - true[i, j]))
    return float(np.mean(errors))


def test_psicov_paper_mae8_on_the_loaders_test_tiles(data_dir):
    rng = np.random.default_rng(15)
    proteins = {"deepcov": {"1abc": 30}, "psicov": {"3ghi": 140, "4jkl": 131}}
    maps = _write_psicov(data_dir / "protein", rng, proteins)
    raw = _load("psicov")
    # 140 residues padded by 5 each side -> 150: tiles at 0 and 22 in each direction, 4 in
    # all; 131 -> 141: tiles at 0 and 13.
    assert raw.y_test.shape == (8, 1, 128, 128)
    assert raw.context["test"]["row_start"].tolist() == [-5, -5, 17, 17, -5, -5, 8, 8]
    full = {pdb: rng.random((n, n)) * 12 - 0.5 for pdb, n in proteins["psicov"].items()}
    tiles = []
    for pdb, n in proteins["psicov"].items():  # cut as the loader's docstring says, not its code
        padded = np.pad(full[pdb], 5, constant_values=99.0)
        starts = [0, n + 10 - 128]
        tiles += [padded[r : r + 128, c : c + 128] for r in starts for c in starts]
    pred = np.stack(tiles)[:, None]
    expected = np.mean(
        [long_range_mae8_by_loops(full[p], np.clip(maps[p], 1, 16)) for p in ("3ghi", "4jkl")]
    )
    metric = METRICS.get(PAPER_METRICS["psicov"])
    assert metric.score(pred, raw.y_test, raw.context["test"]) == pytest.approx(expected)
    # orca's earlier per-tile MAE8 counts every close element of every tile: another number.
    assert METRICS.get("mae8").compute(pred, raw.y_test) != pytest.approx(expected, abs=1e-3)


def test_cosmic_fixed_crops_from_listed_files_with_their_ignore_masks(data_dir):
    rng = np.random.default_rng(9)
    root = data_dir / "cosmic"
    stacks = {}
    for split, n in (("train", 3), ("test", 2)):
        folder = root / f"npy_{split}" / "f435w" / "10760_2" / "vis"
        folder.mkdir(parents=True)
        listed = []
        for i in range(n):
            planes = [rng.normal(size=(192, 192)), rng.random((192, 192)) > 0.9]
            if (split, i) != ("test", 1):  # that file has no ignore plane
                planes.append(rng.random((192, 192)) > 0.95)
            stacks[split, i] = np.stack(planes).astype(np.float32)
            np.save(folder / f"{i + 1}_0.npy", stacks[split, i])
            listed.append(f"./cosmic/npy_{split}/f435w/10760_2/vis/{i + 1}_0.npy")
        np.save(root / f"{split}_dirs.npy", np.array(listed))
    raw = _load("cosmic")
    assert raw.x_train.shape == (3, 1, 128, 128) and raw.y_test.shape == (2, 1, 128, 128)
    assert set(np.unique(raw.y_train).tolist()) <= {0.0, 1.0}
    ignore = raw.context["test"]["ignore"]
    assert ignore.shape == (2, 1, 128, 128) and not ignore[1].any()
    assert np.array_equal(ignore[0, 0], stacks["test", 0][2, 64:192, 64:192])
    assert raw.context["train"]["ignore"].shape == (3, 1, 128, 128)
    # The paper's AUROC: output and target times (1 - ignore), output thresholded at 0.
    logits = raw.y_test * 2 - 1 + rng.normal(scale=1.5, size=raw.y_test.shape)
    kept = 1 - ignore
    reference = roc_auc_score((raw.y_test * kept).ravel(), (logits * kept > 0).ravel())
    metric = METRICS.get(PAPER_METRICS["cosmic"])
    assert metric.score(logits, raw.y_test, raw.context["test"]) == pytest.approx(1 - reference)


# ---------------------------------------------------------------- PDEBench
def test_pdebench_burgers_initial_to_final_state(data_dir):
    h5py = pytest.importorskip("h5py")
    tensor = np.random.default_rng(10).normal(size=(10, 6, 1024)).astype(np.float32)
    (data_dir / "pdebench").mkdir()
    with h5py.File(data_dir / "pdebench" / "1D_Burgers_Sols_Nu1.0.hdf5", "w") as handle:
        handle["tensor"] = tensor
        handle["x-coordinate"] = np.linspace(0, 1, 1024)
        handle["t-coordinate"] = np.linspace(0, 2, 7)
    raw = _load("pdebench-burgers")
    assert raw.x_train.shape == raw.y_train.shape == (9, 1, 1024)
    assert np.array_equal(raw.x_test[0, 0], tensor[0, 0]) and np.array_equal(
        raw.y_test[0, 0], tensor[0, -1]
    )


def test_pdebench_darcy_coefficient_to_solution(data_dir):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(11)
    (data_dir / "pdebench").mkdir()
    with h5py.File(data_dir / "pdebench" / "2D_DarcyFlow_beta0.1_Train.hdf5", "w") as handle:
        handle["nu"] = rng.random((20, 16, 16)).astype(np.float32)
        handle["tensor"] = rng.random((20, 1, 16, 16)).astype(np.float32)
    raw = _load("pdebench-darcy")
    assert raw.x_train.shape == raw.y_train.shape == (18, 1, 8, 8) and len(raw.x_test) == 2


# ---------------------------------------------------------------- OpenML
def _openml_folder(root, dataset_id):
    folder = root / "openml" / "org" / "openml" / "www" / "datasets" / str(dataset_id)
    folder.mkdir(parents=True)
    return folder


def _description(dataset_id, name, target, parquet=False):
    extra = (
        f"<oml:parquet_url>http://openml1.win.tue.nl/dataset{dataset_id}/dataset_{dataset_id}.pq"
        "</oml:parquet_url>"
        if parquet
        else ""
    )
    return (
        '<oml:data_set_description xmlns:oml="http://openml.org/openml">'
        f"<oml:id>{dataset_id}</oml:id><oml:name>{name}</oml:name><oml:version>1</oml:version>"
        f"<oml:format>ARFF</oml:format><oml:url>https://api.openml.org/data/v1/download/"
        f"{dataset_id}/{name}.arff</oml:url>{extra}"
        f"<oml:default_target_attribute>{target}</oml:default_target_attribute>"
        "<oml:status>active</oml:status></oml:data_set_description>"
    )


def _features(columns):
    entries = []
    for index, (name, values, target) in enumerate(columns):
        nominal = "".join(f"<oml:nominal_value>{v}</oml:nominal_value>" for v in values or [])
        entries.append(
            f"<oml:feature><oml:index>{index}</oml:index><oml:name>{name}</oml:name>"
            f"<oml:data_type>{'nominal' if values else 'numeric'}</oml:data_type>{nominal}"
            f"<oml:is_target>{str(target).lower()}</oml:is_target><oml:is_ignore>false"
            "</oml:is_ignore><oml:is_row_identifier>false</oml:is_row_identifier>"
            "<oml:number_of_missing_values>0</oml:number_of_missing_values></oml:feature>"
        )
    return (
        '<oml:data_features xmlns:oml="http://openml.org/openml">'
        + "".join(entries)
        + "</oml:data_features>"
    )


def _credit_g_cache(data_dir):
    """An ARFF cache of a small credit-g: numeric, nominal, and missing values in both."""
    folder = _openml_folder(data_dir, 31)
    purposes = ["car", "tv", "domestic appliance", "other"]
    columns = [
        ("age", None, False),
        ("amount", None, False),
        ("purpose", purposes, False),
        ("telephone", ["none", "yes"], False),
        ("class", ["good", "bad"], True),
    ]
    rng = np.random.default_rng(12)
    rows = []
    for i in range(40):
        amount = "?" if i == 3 else f"{rng.normal(1000, 300):.1f}"
        purpose = "?" if i == 5 else f"'{purposes[i % 4]}'"
        rows.append(
            f"{20 + i},{amount},{purpose},{['none', 'yes'][i % 2]},{['good', 'bad'][i % 3 == 0]}"
        )
    header = ["@RELATION credit-g"]
    for name, values, _ in columns:
        kind = "{" + ",".join(f"'{v}'" for v in values) + "}" if values else "NUMERIC"
        header.append(f"@ATTRIBUTE {name} {kind}")
    (folder / "dataset.arff").write_text("\n".join([*header, "@DATA", *rows]) + "\n")
    (folder / "description.xml").write_text(_description(31, "credit-g", "class"))
    (folder / "features.xml").write_text(_features(columns))
    return folder


def test_openml_from_an_arff_cache(data_dir):
    _credit_g_cache(data_dir)
    raw = _load("openml-credit-g")
    # 2 numeric + 2 nominal columns; "purpose" has 4 values plus a missing-value category.
    assert raw.x_train.shape == (36, 5, 4) and raw.x_test.shape == (4, 5, 4)
    assert raw.y_train.dtype == np.int64 and raw.label_names == ("good", "bad")
    assert np.allclose(raw.x_train[:, :, 2:].sum(axis=1), 1)  # one-hot nominal columns
    assert abs(float(raw.x_train[:, 0, 0].mean())) < 0.2  # standardised numeric column


def _kc1_cache(data_dir):
    import pandas as pd

    folder = _openml_folder(data_dir, 1067)
    rng = np.random.default_rng(13)
    frame = pd.DataFrame({f"f{i}": rng.normal(size=30) for i in range(3)})
    frame["defects"] = pd.Categorical(["false", "true"] * 15, categories=["false", "true"])
    frame.to_parquet(folder / "dataset_1067.pq")
    columns = [(f"f{i}", None, False) for i in range(3)] + [("defects", ["false", "true"], True)]
    (folder / "description.xml").write_text(_description(1067, "kc1", "defects", parquet=True))
    (folder / "features.xml").write_text(_features(columns))
    return folder


def test_openml_from_a_parquet_cache(data_dir):
    _kc1_cache(data_dir)
    raw = _load("openml-kc1")
    assert raw.x_train.shape == (27, 1, 3) and set(raw.y_test.tolist()) <= {0, 1}


class _Planted:
    """A pickle that, when loaded, creates the file `marker`: what a hostile cache holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize(
    ("cache", "dataset_id", "use_arff"), [("arff", 31, True), ("pq", 1067, False)]
)
def test_openml_cache_is_read_as_openml_reads_it_but_never_unpickled(
    data_dir, tmp_path, cache, dataset_id, use_arff
):
    import pickle
    import shutil

    import pandas as pd

    from orca.data.benchmarks.openml_cache import read_openml_cache

    folder = (_credit_g_cache if cache == "arff" else _kc1_cache)(data_dir)
    clean = tmp_path / "openml-copy"
    shutil.copytree(data_dir / "openml", clean)  # for openml itself, without the pickles
    marker = tmp_path / "unpickled"
    for name in ("dataset.pkl.py3", "features.xml.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Planted(marker)))
    _load("openml-credit-g" if cache == "arff" else "openml-kc1")
    assert not marker.exists()  # the planted pickles were never loaded
    ours = read_openml_cache(folder, dataset_id, use_arff)
    assert not marker.exists()

    openml = pytest.importorskip("openml")
    openml.config.set_root_cache_directory(str(clean))
    if use_arff:
        os.environ["OPENML_SKIP_PARQUET"] = "true"
    try:
        dataset = openml.datasets.get_dataset(
            dataset_id, download_data=True, download_qualities=False,
            download_features_meta_data=True,
        )  # fmt: skip
        x, y, categorical, names = dataset.get_data(
            target=dataset.default_target_attribute, dataset_format="dataframe"
        )
    finally:
        os.environ.pop("OPENML_SKIP_PARQUET", None)
    _, our_x, our_y, our_categorical, our_names = ours
    assert our_names == list(names) and our_categorical == list(categorical)
    # openml marks ARFF categoricals ordered; the declared order is what both keep
    pd.testing.assert_frame_equal(our_x, x, check_dtype=False, check_categorical=False)
    for name in (n for n, nominal in zip(names, categorical, strict=True) if nominal):
        assert list(our_x[name].cat.categories) == list(x[name].cat.categories)
        assert (our_x[name].cat.codes.to_numpy() == x[name].cat.codes.to_numpy()).all()
    assert list(our_y.astype(str)) == list(y.astype(str))
    assert list(our_y.cat.categories) == list(y.cat.categories)


def test_openml_missing_cache_names_the_files(data_dir):
    pytest.importorskip("openml")
    with pytest.raises(FileNotFoundError, match=r"description\.xml") as error:
        get_task("openml-kc1").loader()
    assert "ORCA_OPENML_KC1_DIR" in str(error.value)


def test_ingest_accepts_a_benchmark_task(data_dir, tmp_path):
    from orca.stages.ingest import ingest

    (data_dir / "satellite").mkdir()
    rng = np.random.default_rng(14)
    for split, n in (("train", 18), ("test", 4)):
        content = {"data": rng.normal(size=(n, 46)), "label": np.arange(n) % 2 + 1}
        np.save(data_dir / "satellite" / f"satellite_{split}.npy", content, allow_pickle=True)
    summary = ingest("satellite", tmp_path / "splits", seed=0)
    assert summary["splits"]["validation"]["rows"] == 2 and summary["splits"]["test"]["rows"] == 4
