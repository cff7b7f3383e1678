"""`orca recommend`: rank (body, proxy) candidates for a task before paying for fine-tuning.

    orca recommend [TASK] [--task-file F] [--allow-outside] [--data-dir D]
                   [--bodies B]... [--proxies P]... [--budget-s N] [--align-epochs N]
                   [--seed N] [--device auto|cuda|cpu] [--set S.K=V]... [--json]

Each candidate runs ingest, proxy features and align with the config `orca run` would use
for it (flows/recommend.py), so the stages are cached for that run; the ranking rule is
orca.recommend.RANK_RULE. --bodies and --proxies are repeatable and take comma-separated
lists; every body and proxy is checked before any work. --set passes hyperparameters on
as `orca run --set` does (proxy.dataset excepted: that is --proxies).
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Annotated, Any

import typer

from cli.command import TRACKING_PRELOAD, Args, Command
from cli.options import AllowOutside, DataDir, Device, Json, Overrides, Task, TaskFile
from cli.retry import result_or_exit
from orca.recommend import DEFAULT_BODIES, RANDOM_PREFIX, RANK_RULE

Bodies = Annotated[
    list[str] | None,
    typer.Option(
        "--bodies",
        help=f"bodies to try, repeatable or comma-separated: a backbone name, a local model "
        f"directory, NAME@WEIGHTS, or {RANDOM_PREFIX}BACKBONE (random weights, the control); "
        f"default: {', '.join(DEFAULT_BODIES)}",
        show_default=False,
    ),
]
Proxies = Annotated[
    list[str] | None,
    typer.Option(
        "--proxies",
        help="proxy datasets to try with each body, repeatable or comma-separated (default: "
        "every one present locally that fits the body's modality)",
        show_default=False,
    ),
]


def define_recommend(
    task: Task = None,
    task_file: TaskFile = None,
    allow_outside: AllowOutside = False,
    data_dir: DataDir = None,
    bodies: Bodies = None,
    proxies: Proxies = None,
    budget_s: Annotated[
        float | None,
        typer.Option("--budget-s", help="start no candidate after this many seconds"),
    ] = None,
    align_epochs: Annotated[
        int | None,
        typer.Option(
            "--align-epochs",
            help="alignment epochs per candidate (default: the run's, so `orca run` reuses it)",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="the seed, as `orca run --seed`")] = 0,
    device: Device = "auto",
    overrides: Overrides = None,
    json: Json = False,
) -> Args:
    """Rank (body, proxy) candidates by their distance to the task after a short alignment
    (ingest, proxy, align: cached for a later `orca run`)."""
    return Args(**locals())


def prepare(args: Args) -> dict[str, Any]:
    """Every candidate's PipelineConfig, checked before any work (ValueError names the bad
    body, proxy or value and the valid choices)."""
    from cli.commands_run import config_from_args
    from orca.recommend import plan_candidates, split_values

    if args.budget_s is not None and args.budget_s <= 0:
        raise ValueError(f"--budget-s must be > 0 seconds, got {args.budget_s:g}")
    if args.align_epochs is not None and args.align_epochs < 1:
        raise ValueError(f"--align-epochs must be an integer >= 1, got {args.align_epochs}")
    given = list(args.overrides or [])
    if any(item.startswith("proxy.dataset=") for item in given):
        raise ValueError("--set proxy.dataset: name the proxies with --proxies P ... instead")
    candidates = plan_candidates(split_values(args.bodies), split_values(args.proxies))
    configs, tokens = [], []
    commands: dict[tuple[str, str], str] = {}  # (body token, proxy) -> its `orca run`
    notes: set[str] = set()
    for candidate in candidates:
        sets = [f"proxy.dataset={candidate.proxy}", *given]
        if args.align_epochs is not None:
            sets.append(f"align.epochs={args.align_epochs}")
        run_args = Args(
            **{**vars(args), "overrides": sets, "preset": None},
            backbone=candidate.body.backbone,
            method=candidate.body.method,
        )
        config = config_from_args(run_args)
        without = sets[: len(sets) - (args.align_epochs is not None)]
        default_epochs = config_from_args(Args(**{**vars(run_args), "overrides": without}))
        if config.align.epochs != default_epochs.align.epochs:
            notes.add(
                f"--align-epochs {args.align_epochs} differs from the run's default "
                f"({default_epochs.align.epochs}): a later `orca run` recomputes align unless "
                f"it is given --set align.epochs={args.align_epochs}"
            )
        if candidate.body.is_control:
            notes.add(
                f"{RANDOM_PREFIX}BODY is the random-weights control (`orca run --method "
                "scratch`): that method skips alignment, so its two distances are equal"
            )
        configs.append(config)
        tokens.append(candidate.body.token)
        commands[(candidate.body.token, candidate.proxy)] = _run_command(config, sets)
    notes.add("MPNet-base (split wheels) is not a default candidate yet")
    return {"configs": configs, "bodies": tokens, "commands": commands, "notes": sorted(notes)}


def _run_command(config, sets: list[str]) -> str:
    """The `orca run` command whose ingest, proxy and align this candidate caches."""
    words = ["orca", "run"]
    words += ["--task-file", config.task_file] if config.task_file else [config.task]
    words += ["--backbone", config.backbone]
    if config.method != "orca":
        words += ["--method", config.method]
    if config.seed:
        words += ["--seed", str(config.seed)]
    words += [part for item in sets for part in ("--set", item)]
    return shlex.join(words)


def run(args: Args, prepared: dict[str, Any]) -> dict[str, Any]:
    from cli.progress import progress_bars
    from flows.recommend import recommend

    started = time.perf_counter()
    configs = prepared["configs"]
    # One row per stage name, and the count of every candidate's stages (cli/progress.py
    # ends a run at its evaluate stage, which a candidate has not).
    stages = ("ingest", "proxy", "align") * len(configs)
    label = f"{configs[0].task}/recommend ({len(configs)} candidates)"
    with progress_bars(not args.json, stages=stages, label=label):
        state = recommend(
            configs,
            prepared["bodies"],
            budget_s=args.budget_s,
            notes=prepared["notes"],
            return_state=True,
        )
    ranking = result_or_exit(state)
    for row in [*ranking["rows"], *([ranking["best"]] if ranking["best"] else [])]:
        row["run_command"] = prepared["commands"][(row["body"], row["proxy"])]
    ranking["wall_seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print(json.dumps(ranking))
    else:
        print_ranking(ranking)
    return ranking


def print_ranking(ranking: dict[str, Any]) -> None:
    from cli.tables import print_table

    metrics = sorted({row["metric"] for row in ranking["rows"]})
    legend = f"distances: {', '.join(metrics)} to the proxy; rule: {RANK_RULE}"
    print_table(ranking_table(ranking["rows"]), legend)
    best = ranking["best"]
    if best is not None:
        print(f"best: {best['body']} with proxy {best['proxy']}; fine-tune it with:")
        print(f"  {best['run_command']}")
    for row in ranking["rows"]:
        if row["error"]:
            print(f"{row['body']} / {row['proxy']}: {row['status']}: {row['error']}")
    for note in ranking["notes"]:
        print(f"note: {note}")
    print(
        f"mlflow run {ranking['mlflow_run_id']}, flow run {ranking['flow_run_id']}, "
        f"{ranking['wall_seconds']} s"
    )


def ranking_table(rows: list[dict[str, Any]]):
    """One row per candidate, best first: its distances before and after alignment, the
    seconds its stages took, and whether they were computed or came from the cache."""
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for column in ("rank", "body", "method", "proxy", "epochs"):
        table.add_column(column, no_wrap=column != "body")
    for column in ("before ↓", "after ↓", "seconds"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("stages", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["rank"] or "—"),
            escape(row["body"]),
            row["method"],
            row["proxy"],
            str(row["align_epochs"]),
            _number(row["distance_before"]),
            _number(row["distance_after"]),
            _number(sum(row["seconds"].values()), 1),
            _stages_cell(row),
            style="bold green" if row["rank"] == 1 else None,
        )
    return table


def _stages_cell(row: dict[str, Any]) -> str:
    """ "cached", "computed", "2 cached" ... or the status of a candidate not measured."""
    if row["status"] != "measured":
        return row["status"]
    cached = sum(state == "Cached" for state in row["states"].values())
    if cached == len(row["states"]):
        return "cached"
    return f"computed ({cached} cached)" if cached else "computed"


def _number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _status(ranking: dict[str, Any]) -> int:
    """0 when at least one candidate was measured; 1 otherwise (each row says why)."""
    return 0 if ranking["best"] is not None else 1


COMMANDS = {
    "recommend": Command(
        define_recommend,
        prepare,
        run,
        uses_prefect=True,
        preload=("flows.recommend", *TRACKING_PRELOAD),
        status=_status,
    ),
}
