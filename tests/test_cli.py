import json

import pytest

from cli.main import main, parse_overrides


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
        (["run", "gunpoint", "--set", "refine.optimizer=lion"], "refine.optimizer='lion'"),
        (["run", "gunpoint", "--set", "lr=0.1"], "expected SECTION.FIELD=VALUE"),
        (["run", "gunpoint", "--seed", "-1"], "seed=-1 is out of range"),
        (["run"], "give a TASK (see `orca tasks`) or --task-file FILE"),
        (["run", "--task-file", "nope/task.yaml"], "task file"),
        (["ingest", "--task-file", "nope/task.yaml"], "nope/task.yaml does not exist"),
        (["bench", "--suite", "dmeo"], "unknown suite 'dmeo'; valid suites: demo"),
        (["bench", "--tasks", "gunpoint", "--methods", "orcaa"], "unknown method 'orcaa'"),
        (["bench"], "a benchmark needs a suite, tasks or task_files"),
        (["bench", "--suite", "demo", "--workers", "0"], "--workers must be an integer >= 1"),
        (["demo", "--threads", "-2"], "--threads must be an integer >= 1, got -2"),
    ],
)
def test_bad_arguments_fail_before_any_work(argv, message, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the pipeline must not start")

    monkeypatch.setattr("cli.main._run_pipeline", no_work)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_malformed_seed_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "gunpoint", "--seed", "many"])
    assert exit_info.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_tasks_json_lists_the_registry(capsys):
    assert main(["tasks", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    gunpoint = next(t for t in tasks if t["name"] == "gunpoint")
    assert gunpoint["input_shape"] == [1, 150] and gunpoint["lower_is_better"] is True


def test_overrides_parse_json_values():
    assert parse_overrides(
        ["refine.lr=1e-4", "align.otdd_inner=gaussian", "refine.clip_norm=null"]
    ) == {
        "refine": {"lr": 1e-4, "clip_norm": None},
        "align": {"otdd_inner": "gaussian"},
    }


def test_ingest_bench_and_compare_from_the_command_line(
    prefect_harness, tiny_bert_dir, tmp_path, capsys
):
    from test_task_file import write_task

    task_file = write_task(tmp_path, name="cli-task")
    assert main(["ingest", "--task-file", str(task_file), "--json"]) == 0
    reference = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reference["splits"]["test"]["rows"] == 12
    tiny = ["--set", "align.epochs=1", "--set", "refine.epochs=1", "--set", "proxy.max_examples=60"]
    argv = ["bench", "--task-file", str(task_file), "--methods", "orca", "scratch", "--seeds", "1"]
    assert main([*argv, "--backbone", str(tiny_bert_dir), *tiny, "--json"]) == 0
    bench = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bench["runs"] == 2 and bench["failures"] == []
    reports = tmp_path / "reports"
    # compare in a fresh process would not know the task: it reloads it from the task file.
    from orca.data.tasks import TASKS

    TASKS.unregister("cli-task")
    assert main(["compare", "--benchmark-run", bench["sweep_run_id"], "--reports-dir",
                 str(reports), "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = {"task", "method", "metric", "mean", "std", "n_seeds", "lower_is_better"}
    assert {row["method"] for row in out["rows"]} == {"orca", "scratch"}
    assert all(set(row) == keys for row in out["rows"])
    assert (reports / "comparison.md").exists()
    assert out["champions"]["cli-task"].startswith("orca-cli-task/")
