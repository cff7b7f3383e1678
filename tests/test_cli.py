import json
import re
import subprocess
import sys

import pytest

from cli.main import main
from cli.options import parse_overrides, spread_variadic


def one_json_object(stdout: str) -> dict:
    """The JSON object that is all of a --json command's stdout."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def plain(text: str) -> str:
    """`text` without the terminal's escape sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "gunpiont"], "unknown task 'gunpiont'; valid tasks: "),
        (["run", "gunpoint", "--backbone", "gpt-9"], "unknown backbone 'gpt-9'; valid backbones"),
        (
            ["run", "gunpoint", "--method", "fptt"],
            "unknown method 'fptt'; valid methods: forest, fpt, knn, linear, no-align, orca, "
            "orca-cosine, orca-l2, orca-mmd, scratch",
        ),
        (["run", "gunpoint", "--set", "refine.lr=-0.1"], "refine.lr=-0.1 is out of range"),
        (
            ["run", "gunpoint", "--set", "refine.optimizer=lion"],
            "refine.optimizer: unknown optimizer 'lion'; valid optimizers: adam, adamw, sgd",
        ),
        (["run", "gunpoint", "--set", "lr=0.1"], "expected SECTION.FIELD=VALUE"),
        (["run", "gunpoint", "--seed", "-1"], "seed=-1 is out of range"),
        (["run"], "give a TASK (see `orca tasks`) or --task-file FILE"),
        (["run", "--task-file", "nope/task.yaml"], "task file"),
        (["ingest", "--task-file", "nope/task.yaml"], "nope/task.yaml does not exist"),
        (["bench", "--suite", "dmeo"], "unknown suite 'dmeo'; valid suites: demo"),
        (["bench", "--tasks", "gunpoint", "--methods", "orcaa"], "unknown method 'orcaa'"),
        (["bench"], "a sweep needs a suite, tasks or task_files"),
        (["bench", "--suite", "demo", "--workers", "0"], "--workers must be an integer >= 1"),
        (["demo", "--threads", "-2"], "--threads must be an integer >= 1, got -2"),
    ],
)
def test_bad_arguments_fail_before_any_work(argv, message, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the pipeline must not start")

    monkeypatch.setattr("cli.commands_run.run_pipeline", no_work)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "gunpoint", "--seed", "many"], ["orca run: error: ", "'--seed'", "integer"]),
        (
            ["run", "gunpoint", "--frobnicate"],
            ["orca run: error: ", "No such option", "--frobnicate"],
        ),
        (
            ["otdd", "a.npz", "b.npz", "--outer", "fast"],
            ["orca otdd: error: ", "'--outer'", "'fast'", "'sinkhorn', 'exact', 'sampled'"],
        ),
        (
            ["otdd", "a.npz", "b.npz", "--precision", "float16"],
            ["'--precision'", "'float16'", "'float32', 'float64'"],
        ),
        (["retry"], ["orca retry: error: ", "Missing argument 'FLOW_RUN_ID'"]),
        (["bench", "--methods"], ["--methods", "requires an argument"]),
        (["rnu", "gunpoint"], ["orca: error: ", "No such command 'rnu'", "'run'"]),
        (["--state-dir"], ["--state-dir", "requires an argument"]),
    ],
)
def test_a_bad_command_line_exits_2_naming_the_argument(argv, words, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("nothing may start")

    monkeypatch.setattr("cli.main._prepare", no_work)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    for word in words:
        assert word in captured.err
    assert len(captured.err.strip().splitlines()) <= 2  # the error and where help is


def test_version_and_help_exit_0(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"orca (orca-xmodal) {version('orca-xmodal')}"
    assert main(["bench", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--suite", "--tasks", "--task-file", "--methods", "--seeds", "--runner", "--set"):
        assert flag in text


def test_help_loads_no_heavy_module():
    code = (
        "import sys; from cli.main import main; code = main(['--help']); "
        "heavy = ('torch', 'prefect', 'mlflow', 'flows', 'tasks'); "
        "print(code, [m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0 []"


def test_several_values_after_one_flag_are_spread():
    argv = ["--state-dir", "bench", "bench", "--methods", "orca", "knn", "--seeds", "1"]
    assert spread_variadic(argv) == [
        "--state-dir", "bench", "bench", "--methods", "orca", "--methods", "knn", "--seeds", "1"
    ]  # fmt: skip
    assert spread_variadic(["bench", "--tasks", "a", "b", "--json"]) == [
        "bench", "--tasks", "a", "--tasks", "b", "--json"
    ]  # fmt: skip
    assert spread_variadic(["run", "--methods", "a", "b"]) == ["run", "--methods", "a", "b"]
    assert spread_variadic(["demo", "--methods"]) == ["demo", "--methods"]


def test_flags_and_defaults_are_as_before(monkeypatch):
    from cli.main import parse

    monkeypatch.setenv("ORCA_DASK_ADDRESS", "tcp://scheduler:8786")
    argv = ["--state-dir", "s", "bench", "--tasks", "a", "b", "--task-file=f1", "--task-file",
            "f2", "--methods", "orca", "knn", "--seeds", "2", "--workers", "2", "--set",
            "refine.lr=1e-4", "--set", "align.epochs=1", "--json"]  # fmt: skip
    name, args, settings = parse(argv)
    assert name == "bench" and settings["state_dir"] == "s" and settings["result_storage"] is None
    assert args.tasks == ["a", "b"] and args.task_files == ["f1", "f2"]
    assert args.methods == ["orca", "knn"] and args.seeds == 2 and args.workers == 2
    assert args.overrides == ["refine.lr=1e-4", "align.epochs=1"] and args.json is True
    assert (args.threads, args.runner, args.suite, args.backbone) == (None, "local", None, None)
    assert args.dask_address == "tcp://scheduler:8786" and args.allow_outside is False

    _, demo, _ = parse(["demo"])
    assert (demo.seeds, demo.workers, demo.methods, demo.reports_dir) == (2, 2, None, "reports")
    _, run, _ = parse(["run", "--seed", "-1", "gunpoint", "--set", "refine.lr=-0.1"])
    assert (run.task, run.seed, run.method, run.overrides) == (
        "gunpoint",
        -1,
        "orca",
        ["refine.lr=-0.1"],
    )
    assert (run.task_file, run.backbone, run.data_dir, run.json) == (None, None, None, False)
    _, ablations, _ = parse(["ablations"])
    assert (ablations.task, ablations.image_task, ablations.seeds) == ("gunpoint", "digits", 2)
    _, ui, _ = parse(["ui"])
    assert (ui.host, ui.prefect_port, ui.mlflow_port) == ("127.0.0.1", 4200, 5000)
    _, compare, _ = parse(["compare", "--sweep-run", "abc"])
    assert (compare.sweep_run, compare.reports_dir) == ("abc", "reports")
    _, compare, _ = parse(["compare", "--benchmark-run", "abc"])  # the flag's former name
    assert compare.sweep_run == "abc"
    _, otdd, _ = parse(["otdd", "s.npz", "t.npz", "--maxsamples", "0", "--outer", "sampled"])
    assert (otdd.source, otdd.target, otdd.maxsamples, otdd.outer) == (
        "s.npz",
        "t.npz",
        0,
        "sampled",
    )
    assert (otdd.precision, otdd.inner, otdd.epsilon) == ("float32", None, None)
    _, retry, _ = parse(["retry", "abc", "--json"])
    assert retry.flow_run_id == "abc" and retry.json


def test_tasks_json_lists_the_registry(capsys):
    assert main(["tasks", "--json"]) == 0
    tasks = one_json_object(capsys.readouterr().out)
    gunpoint = next(t for t in tasks if t["name"] == "gunpoint")
    assert gunpoint["input_shape"] == [1, 150] and gunpoint["lower_is_better"] is True


def test_overrides_parse_json_values():
    assert parse_overrides(
        ["refine.lr=1e-4", "align.otdd_inner=gaussian", "refine.clip_norm=null"]
    ) == {
        "refine": {"lr": 1e-4, "clip_norm": None},
        "align": {"otdd_inner": "gaussian"},
    }


def test_tasks_prints_a_table(capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # a pipe: the table keeps its natural width
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "task" in line and "metric" in line)
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
        "task", "modality", "output", "metric", "description"
    ]  # fmt: skip
    gunpoint = next(line for line in out.splitlines() if "│ gunpoint " in line)
    assert [cell.strip() for cell in gunpoint.strip("│").split("│")][:4] == [
        "gunpoint", "1d", "classification", "error_rate ↓"
    ]  # fmt: skip
    assert out.rstrip().endswith("↓ lower is better, ↑ higher is better")


def test_ablations_json_is_one_object(prefect_harness, capsys, monkeypatch):
    import flows.ablations

    seen = []

    def ablations(config, reports_dir):
        seen.append((config, reports_dir))
        return {"report": f"{reports_dir}/ablations.md", "skipped": [], "text": "a table"}

    monkeypatch.setattr(flows.ablations, "ablations", ablations)
    argv = ["ablations", "--seeds", "1", "--set", "refine.epochs=1", "--reports-dir", "r"]
    assert main([*argv, "--json"]) == 0
    assert one_json_object(capsys.readouterr().out) == {"report": "r/ablations.md", "skipped": []}
    config, reports_dir = seen[0]
    assert (config.task, config.image_task, config.seeds, reports_dir) == (
        "gunpoint",
        "digits",
        1,
        "r",
    )
    assert config.overrides == {"refine": {"epochs": 1}}
    assert main(argv) == 0
    assert capsys.readouterr().out == "a table\nreport: r/ablations.md\n"


def test_ui_json_is_one_object_on_stdout(capsys):
    from cli.ui import UIOptions, _announce
    from cli.ui_servers import child_servers
    from runtime.state import StateDir

    state = StateDir.from_env()
    options = UIOptions("127.0.0.1", 4300, 5300)
    _announce(options, state, child_servers(options, state), as_json=True)
    captured = capsys.readouterr()
    assert one_json_object(captured.out) == {
        "prefect_url": "http://127.0.0.1:4300",
        "mlflow_url": "http://127.0.0.1:5300",
    }
    assert "Prefect UI: http://127.0.0.1:4300" in captured.err
    _announce(options, state, child_servers(options, state), as_json=False)
    captured = capsys.readouterr()
    assert "Prefect UI: http://127.0.0.1:4300" in captured.out and "{" not in captured.out


def test_ingest_bench_compare_run_and_demo_from_the_command_line(
    prefect_harness, tiny_bert_dir, tmp_path, capsys, monkeypatch
):
    from test_task_file import write_task

    task_file = write_task(tmp_path, name="cli-task")
    assert main(["ingest", "--task-file", str(task_file), "--json"]) == 0
    reference = one_json_object(capsys.readouterr().out)
    assert reference["splits"]["test"]["rows"] == 12
    tiny = ["--set", "align.epochs=1", "--set", "refine.epochs=1", "--set", "proxy.max_examples=60"]
    tiny += ["--backbone", str(tiny_bert_dir)]
    argv = ["bench", "--task-file", str(task_file), "--methods", "orca", "scratch", "--seeds", "1"]
    # On a terminal (forced through rich's TTY_COMPATIBLE) the progress goes to stderr.
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert main([*argv, *tiny]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^sweep \w+: 2 runs, 0 failed, ", out, re.MULTILINE), out
    bars = plain(err)
    assert "2/2 runs" in bars and "1/1 epochs" in bars and "5/5 stages" in bars, bars[-3000:]
    # With --json: one JSON object and no progress, even on a terminal. The runs come whole
    # from the run cache.
    assert main([*argv, *tiny, "--json"]) == 0
    out, err = capsys.readouterr()
    bench = one_json_object(out)
    assert bench["runs"] == 2 and bench["failures"] == [] and bench["reused"] == 2
    assert "━" not in err and "runs" not in plain(err)

    # The same orca run alone: every stage from the cache, each shown as Cached.
    assert main(["run", "--task-file", str(task_file), *tiny]) == 0
    out, err = capsys.readouterr()
    assert (
        "stages: ingest=Cached, proxy=Cached, align=Cached, refine=Cached, evaluate=Cached" in out
    )
    bars = plain(err)
    assert "cli-task/orca/seed0" in bars and "5/5 stages" in bars and "Cached" in bars
    assert main(["run", "--task-file", str(task_file), *tiny, "--json"]) == 0
    out, err = capsys.readouterr()
    assert set(one_json_object(out)["states"].values()) == {"Cached"} and "━" not in err
    monkeypatch.delenv("TTY_COMPATIBLE")

    reports = tmp_path / "reports"
    # compare in a fresh process would not know the task: it reloads it from the task file.
    from orca.data.tasks import TASKS

    TASKS.unregister("cli-task")
    compare = ["compare", "--sweep-run", bench["sweep_run_id"], "--reports-dir", str(reports)]
    assert main([*compare, "--json"]) == 0
    out = one_json_object(capsys.readouterr().out)
    keys = {"task", "method", "metric", "mean", "std", "n_seeds", "lower_is_better"}
    assert {row["method"] for row in out["rows"]} == {"orca", "scratch"}
    assert all(set(row) == keys for row in out["rows"])
    assert (reports / "comparison.md").exists()
    assert out["champions"]["cli-task"].startswith("orca-cli-task/")
    assert main(compare) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if "metric" in line)
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
        "task", "metric", "orca", "scratch"
    ]  # fmt: skip
    assert "│ cli-task │ error_rate ↓ │" in table and f"report: {reports}" in table

    # demo = bench + compare + RESULTS.md; its bench is the one above.
    def demo_bench(config, runner, as_json, quiet=False):
        assert (config.suite, config.methods, config.seeds, runner.workers) == (
            "demo", ("orca", "knn"), 1, 2
        )  # fmt: skip
        assert as_json and quiet
        return bench

    monkeypatch.setattr("cli.commands_sweep.run_bench", demo_bench)
    demo = ["demo", "--methods", "orca", "knn", "--seeds", "1", "--reports-dir", str(reports)]
    assert main([*demo, "--json"]) == 0
    out = one_json_object(capsys.readouterr().out)
    assert set(out) == {"sweep_run_id", "rows", "report", "champions", "runs", "reused",
                        "failures", "results", "wall_seconds"}  # fmt: skip
    assert out["results"] == str(reports / "RESULTS.md") and out["runs"] == 2
