import json

import pytest

from flows.cli import main, parse_overrides


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "gunpiont"], "unknown task 'gunpiont'; valid tasks: "),
        (["run", "gunpoint", "--backbone", "gpt-9"], "unknown backbone 'gpt-9'; valid backbones"),
        (
            ["run", "gunpoint", "--method", "fptt"],
            "unknown method 'fptt'; valid methods: fpt, no-align, orca, orca-cosine, "
            "orca-l2, orca-mmd, scratch",
        ),
        (["run", "gunpoint", "--set", "refine.lr=-0.1"], "refine.lr=-0.1 is out of range"),
        (["run", "gunpoint", "--set", "refine.optimizer=lion"], "refine.optimizer='lion'"),
        (["run", "gunpoint", "--set", "lr=0.1"], "expected SECTION.FIELD=VALUE"),
        (["run", "gunpoint", "--seed", "-1"], "seed=-1 is out of range"),
    ],
)
def test_bad_arguments_fail_before_any_work(argv, message, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the pipeline must not start")

    monkeypatch.setattr("flows.cli._run_pipeline", no_work)
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
