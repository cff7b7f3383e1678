"""`orca otdd SOURCE.npz TARGET.npz`: the value equals the library's, --json, and every bad
file is a clean error (exit 2) that names the file and the problem."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cli.main import main
from orca.otdd import OTDDConfig, otdd
from orca.otdd.files import DatasetFileError, load_labelled


def dataset(n, d, classes, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, d)) * 0.5 + y[:, None] * 0.8 + shift
    return x, y


@pytest.fixture
def files(tmp_path):
    xs, ys = dataset(40, 3, 3, seed=1)
    xt, yt = dataset(30, 3, 2, seed=2, shift=0.4)
    source, target = tmp_path / "source.npz", tmp_path / "target.npz"
    np.savez(source, X=xs, y=ys)
    np.savez(target, X=xt, y=yt)
    return source, target, (xs, ys, xt, yt)


def api_value(arrays, **config):
    tensors = [torch.from_numpy(np.asarray(a)) for a in arrays]
    return otdd(*tensors, OTDDConfig(**config)).item()


@pytest.mark.parametrize(
    ("flags", "config"),
    [
        ([], {}),
        (["--inner", "gaussian"], {"inner": "gaussian"}),
        (
            ["--inner", "sinkhorn", "--epsilon", "0.5", "--maxsamples", "25", "--seed", "3"],
            {"inner": "sinkhorn", "epsilon": 0.5, "max_samples": 25, "seed": 3},
        ),
        (
            ["--outer", "sampled", "--maxsamples", "25", "--inner", "gaussian"],
            {"inner": "gaussian", "max_samples": 25},
        ),
        (["--outer", "exact", "--inner", "gaussian"], {"outer": "exact", "inner": "gaussian"}),
    ],
)
def test_value_matches_the_library(files, capsys, flags, config):
    source, target, arrays = files
    argv = ["otdd", str(source), str(target), "--precision", "float64", *flags]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1  # with --json, stdout holds the JSON object alone
    result = json.loads(lines[0])
    assert set(result) == {"value", "seconds", "inner", "outer"}
    expected = api_value(arrays, **config)
    assert result["value"] == pytest.approx(expected, rel=1e-9)
    assert result["inner"] == config.get("inner", "exact")
    sampled = "max_samples" in config  # fewer points than the files hold
    assert result["outer"] == ("sampled" if sampled else config.get("outer", "sinkhorn"))
    assert ("sampled: sinkhorn on 25 of up to" in captured.err) == sampled
    assert result["seconds"] >= 0
    assert main(argv) == 0  # the same in words
    lines = capsys.readouterr().out.strip().splitlines()
    assert "OTDD" in lines[0] and f"{expected:.6g}" in lines[0]
    assert len(lines) == (2 if sampled else 1)
    assert ("sampled: sinkhorn on 25 of up to" in lines[-1]) == sampled


def test_human_readable_without_json(files, capsys):
    source, target, _ = files
    assert main(["otdd", str(source), str(target), "--inner", "gaussian"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "source.npz" in out[0] and "target.npz" in out[0]


def test_tolerance_reaches_the_solver_and_float32_is_the_default(files, capsys):
    source, target, arrays = files
    flags = ["--inner", "sinkhorn", "--tol", "1e-9", "--json"]
    assert main(["otdd", str(source), str(target), *flags, "--precision", "float64"]) == 0
    tight = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["value"]
    assert tight == pytest.approx(api_value(arrays, inner="sinkhorn", sinkhorn_tol=1e-9), rel=1e-9)
    assert main(["otdd", str(source), str(target), *flags]) == 0  # float32
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["value"]
    assert single != tight and single == pytest.approx(tight, rel=1e-4)


def test_maxsamples_zero_means_every_point(files, capsys):
    source, target, arrays = files
    flags = ["--inner", "gaussian", "--maxsamples", "0", "--json", "--precision", "float64"]
    assert main(["otdd", str(source), str(target), *flags]) == 0
    value = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["value"]
    expected = api_value(arrays, inner="gaussian", max_samples=None)
    assert value == pytest.approx(expected, rel=1e-9)


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


def write_text(path):
    path.write_text("hello")
    return path


def write_npy(path):
    with open(path, "wb") as handle:  # np.save(path) would append ".npy" to the name
        np.save(handle, X_GOOD)
    return path


X_GOOD = np.zeros((4, 2)) + np.arange(4)[:, None]
Y_GOOD = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p, ["bad.npz", "no such file"]),
        (write_text, ["bad.npz", "not an .npz"]),
        (write_npy, ["bad.npz", "single .npy"]),
        (lambda p: write(p, X=X_GOOD, labels=Y_GOOD), ["bad.npz", "'y'", "'X', 'labels'"]),
        (lambda p: write(p, features=X_GOOD, y=Y_GOOD), ["bad.npz", "'X'", "'features'"]),
        (lambda p: write(p, X=np.zeros(4), y=Y_GOOD), ["bad.npz", "X must be 2-D", "(4,)"]),
        (lambda p: write(p, X=X_GOOD, y=Y_GOOD[:, None]), ["bad.npz", "y must be 1-D", "(4, 1)"]),
        (lambda p: write(p, X=X_GOOD, y=Y_GOOD[:3]), ["bad.npz", "4 rows", "3 labels"]),
        (
            lambda p: write(p, X=np.where(X_GOOD > 2, np.nan, X_GOOD), y=Y_GOOD),
            ["bad.npz", "2 non-finite"],
        ),
        (lambda p: write(p, X=X_GOOD, y=Y_GOOD + 0.5), ["bad.npz", "integer", "4 value(s)"]),
        (lambda p: write(p, X=X_GOOD, y=np.array(list("abab"))), ["bad.npz", "integer"]),
        (lambda p: write(p, X=X_GOOD, y=np.zeros(4, int)), ["bad.npz", "one class only"]),
        (lambda p: write(p, X=np.zeros((4, 3)), y=Y_GOOD), ["bad.npz", "dimension 3", "2"]),
        (lambda p: write(p, X=X_GOOD.astype(str), y=Y_GOOD), ["bad.npz", "real numbers"]),
    ],
)
def test_bad_target_file_is_a_clean_error(tmp_path, capsys, make, words):
    source = write(tmp_path / "good.npz", X=X_GOOD, y=Y_GOOD)
    bad = make(tmp_path / "bad.npz")
    assert main(["otdd", str(source), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("orca otdd: error: ")
    for word in words:
        assert word in captured.err


def test_bad_source_file_is_named(tmp_path, capsys):
    target = write(tmp_path / "good.npz", X=X_GOOD, y=Y_GOOD)
    source = write(tmp_path / "src.npz", X=X_GOOD, y=np.ones(4, int))
    assert main(["otdd", str(source), str(target)]) == 2
    assert "src.npz: one class only" in capsys.readouterr().err


def test_bad_option_is_a_clean_error(files, capsys):
    source, target, _ = files
    assert main(["otdd", str(source), str(target), "--inner", "wasserstein"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("orca otdd: error: inner: unknown inner kind 'wasserstein'; ")
    assert "valid inner kinds: exact, gaussian, sinkhorn" in err
    assert main(["otdd", str(source), str(target), "--epsilon", "-1"]) == 2
    assert "epsilon" in capsys.readouterr().err


def test_loader_returns_checked_arrays(tmp_path):
    path = write(tmp_path / "d.npz", X=X_GOOD.astype(np.float32), y=Y_GOOD.astype(np.float64))
    loaded = load_labelled(path)
    # float32 features stay float32 (no copy of a large file); integers become float64
    assert loaded.features.dtype == np.float32 and loaded.labels.dtype == np.int64
    np.testing.assert_array_equal(loaded.labels, Y_GOOD)
    path = write(tmp_path / "i.npz", X=np.arange(12).reshape(6, 2), y=np.array([0, 1] * 3))
    assert load_labelled(path).features.dtype == np.float64
    with pytest.raises(ValueError):  # DatasetFileError is a ValueError
        load_labelled(tmp_path / "missing.npz")
    assert issubclass(DatasetFileError, ValueError)


def test_otdd_command_loads_neither_prefect_nor_mlflow(files):
    source, target, _ = files
    code = (
        "import sys; from cli.main import main; "
        f"code = main(['otdd', {str(source)!r}, {str(target)!r}, '--inner', 'gaussian']); "
        "loaded = [m for m in ('prefect', 'mlflow', 'transformers') if m in sys.modules]; "
        "print(code, loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0 []"


def test_non_finite_values_are_found_in_any_block(tmp_path, monkeypatch):
    import orca.otdd.files as files_module

    monkeypatch.setattr(files_module, "_CHECK_ELEMENTS", 4)  # two rows of 2 per block
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    x[9, 1] = np.inf  # in the last block
    path = write(tmp_path / "late.npz", X=x, y=np.array([0, 1] * 5))
    with pytest.raises(DatasetFileError, match=r"late\.npz: X has 1 non-finite"):
        load_labelled(path)


@pytest.mark.parametrize(
    ("outer", "maxsamples", "largest", "expected"),
    [
        (None, None, 5000, ("sinkhorn", None)),  # every point up to 5000 a side
        (None, None, 5001, ("sinkhorn", 5000)),  # sampled above
        ("sinkhorn", None, 100_000, ("sinkhorn", None)),  # asked for every point
        ("exact", None, 100_000, ("exact", None)),
        ("sampled", None, 100, ("sinkhorn", 5000)),
        ("sampled", 2500, 100_000, ("sinkhorn", 2500)),
        ("exact", 2500, 100_000, ("exact", 2500)),
        (None, 0, 100_000, ("sinkhorn", None)),
    ],
)
def test_outer_choices_resolve_to_the_library_settings(outer, maxsamples, largest, expected):
    from cli.otdd import otdd_outer

    assert otdd_outer(outer, maxsamples, largest) == expected


def test_sampled_with_every_point_is_refused(files, capsys):
    source, target, _ = files
    assert main(["otdd", str(source), str(target), "--outer", "sampled", "--maxsamples", "0"]) == 2
    assert "--outer sampled needs --maxsamples N > 0" in capsys.readouterr().err
