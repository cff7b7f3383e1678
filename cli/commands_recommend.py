"""`orca recommend`: rank (body, proxy) candidates for a task before paying for fine-tuning.

    orca recommend [TASK] [--task-file F] [--allow-outside] [--data-dir D]
                   [--bodies B]... [--proxies P]... [--budget-s N] [--align-epochs N]
                   [--signals S]... [--rank-by S] [--seed N] [--device auto|cuda|cpu]
                   [--set S.K=V]... [--json]
    orca recommend --validate [--suite NAME] [TASK] [--bodies B]... [--reports-dir D]

Each candidate runs ingest, proxy features and align with the config `orca run` would use
for it (flows/recommend.py), so the stages are cached for that run; the ranking rule is
orca.recommend.RANK_RULE. --bodies and --proxies are repeatable and take comma-separated
lists; every body and proxy is checked before any work. --set passes hyperparameters on
as `orca run --set` does (proxy.dataset excepted: that is --proxies).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.command import TRACKING_PRELOAD, Args, Command
from cli.options import (
    AllowOutside,
    DataDir,
    Device,
    Json,
    Overrides,
    ReportsDir,
    Task,
    TaskFile,
)
from cli.retry import result_or_exit
from orca.recommend import DEFAULT_BODIES, DEFAULT_RANK_SIGNAL, RANDOM_PREFIX, RANK_RULE

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
    signals: Annotated[
        list[str] | None,
        typer.Option(
            "--signals",
            help="extra signals to measure per candidate, repeatable or comma-separated: "
            "probe (a linear probe's validation loss), otdd_kmeans (the distance with k-means "
            "labels), otdd_scaled; the distances before and after alignment and their ratio "
            "always are, and so is the --rank-by signal",
            show_default=False,
        ),
    ] = None,
    rank_by: Annotated[
        str | None,
        typer.Option(
            "--rank-by",
            help=f"the measured signal to rank by, lower is better (default: "
            f"{DEFAULT_RANK_SIGNAL})",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="the seed, as `orca run --seed`")] = 0,
    device: Device = "auto",
    overrides: Overrides = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate",
            help="run the full pipeline for every candidate of every task of --suite (and "
            "TASK) and report how well each signal predicted the test error "
            "(reports/RECOMMEND-VALIDATION.md)",
        ),
    ] = False,
    suite: Annotated[
        str | None,
        typer.Option("--suite", help="--validate: the task suite (default: demo, without TASK)"),
    ] = None,
    seeds: Annotated[
        int,
        typer.Option("--seeds", help="--validate: average over seeds 0 .. N-1"),
    ] = 1,
    reports_dir: ReportsDir = "reports",
    json: Json = False,
) -> Args:
    """Rank (body, proxy) candidates by their distance to the task after a short alignment
    (ingest, proxy, align: cached for a later `orca run`); --validate checks the ranking
    against full fine-tuning."""
    return Args(**locals())


def prepare(args: Args) -> dict[str, Any]:
    """The RecommendConfig, every candidate checked before any work (ValueError names the
    bad body, proxy or value and the valid choices)."""
    import os

    from cli.options import parse_overrides
    from orca.config.recommend import RecommendConfig
    from orca.recommend import split_values

    if args.data_dir:
        os.environ["ORCA_DATA_DIR"] = str(Path(args.data_dir).expanduser().resolve())
    if args.validate:
        return _prepare_validation(args)
    if args.suite is not None or args.seeds != 1:
        raise ValueError(
            "--suite and --seeds go with --validate; give one TASK (and --seed) to recommend for"
        )
    if not args.task and not args.task_file:
        raise ValueError("give a TASK (see `orca tasks`) or --task-file FILE")
    if any(item.startswith("proxy.dataset=") for item in args.overrides or ()):
        raise ValueError("--set proxy.dataset: name the proxies with --proxies P ... instead")
    config = RecommendConfig(
        task=args.task,
        task_file=args.task_file,
        bodies=tuple(split_values(args.bodies)),
        proxies=tuple(split_values(args.proxies)),
        budget_s=args.budget_s,
        align_epochs=args.align_epochs,
        seed=args.seed,
        device=args.device,
        overrides=parse_overrides(args.overrides),
        allow_outside=args.allow_outside,
        signals=tuple(split_values(args.signals)),
        rank_by=args.rank_by or DEFAULT_RANK_SIGNAL,
    )
    return {"config": config, "candidates": len(config.plan().candidates)}


def _prepare_validation(args: Args) -> dict[str, Any]:
    from cli.options import parse_overrides
    from orca.config.recommend import RecommendValidationConfig
    from orca.recommend import split_values

    if args.task_file:
        raise ValueError(
            "--validate runs registered tasks: give --suite and/or TASK, not --task-file"
        )
    given = {
        "signals": args.signals,
        "rank_by": args.rank_by,
        "budget_s": args.budget_s,
        "align_epochs": args.align_epochs,
        "seed": args.seed,  # --seeds N: seeds 0 .. N-1
    }
    unused = [f"--{name.replace('_', '-')}" for name, value in given.items() if value]
    if unused:
        raise ValueError(
            "--validate measures every signal with the runs' own settings; drop "
            + ", ".join(unused)
        )
    config = RecommendValidationConfig(
        suite=args.suite or (None if args.task else "demo"),
        tasks=(args.task,) if args.task else (),
        bodies=tuple(split_values(args.bodies)),
        proxies=tuple(split_values(args.proxies)),
        seeds=args.seeds,
        device=args.device,
        overrides=parse_overrides(args.overrides),
    )
    return {"validation": config}


def _run_validation(args: Args, config) -> dict[str, Any]:
    from flows.recommend_validate import validate_recommendations

    state = validate_recommendations(config, reports_dir=args.reports_dir, return_state=True)
    out = result_or_exit(state)
    if args.json:
        print(json.dumps(out))
        return out
    print(Path(out["report"]).read_text())
    print(f"report: {out['report']} (data: {out['data']}); {out['wall_seconds']} s")
    return out


def run(args: Args, prepared: dict[str, Any]) -> dict[str, Any]:
    from cli.progress import progress_bars
    from flows.recommend import recommend

    if "validation" in prepared:
        return _run_validation(args, prepared["validation"])
    started = time.perf_counter()
    config = prepared["config"]
    count = prepared["candidates"]
    # One row per stage name, and the count of every candidate's stages (cli/progress.py
    # ends a run at its evaluate stage, which a candidate has not).
    stages = ("ingest", "proxy", "align") * count
    label = f"{config.label}/recommend ({count} candidates)"
    with progress_bars(not args.json, stages=stages, label=label):
        state = recommend(config, return_state=True)
    ranking = result_or_exit(state)
    ranking["wall_seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print(json.dumps(ranking))
    else:
        print_ranking(ranking)
    return ranking


def print_ranking(ranking: dict[str, Any]) -> None:
    from cli.tables import print_table

    metrics = sorted({row["metric"] for row in ranking["rows"]})
    legend = (
        f"distances: {', '.join(metrics)} to the proxy; ranked by {ranking['rank_by']}; "
        f"rule: {RANK_RULE}"
    )
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

    from orca.recommend import extra_signals

    table = Table()
    for column in ("rank", "body", "method", "proxy", "epochs"):
        table.add_column(column, no_wrap=column != "body")
    extra = extra_signals(rows)
    for column in ("before ↓", "after ↓", *(f"{name} ↓" for name in extra), "seconds"):
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
            *(_number(row["signals"].get(name)) for name in extra),
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
    """0 when at least one candidate was measured (a validation: when no run failed);
    1 otherwise (each row, or the report, says why)."""
    if "statistics" in ranking:
        return 1 if ranking["failures"] else 0
    return 0 if ranking["best"] is not None else 1


COMMANDS = {
    "recommend": Command(
        define_recommend,
        prepare,
        run,
        uses_prefect=True,
        preload=("flows.recommend", "flows.recommend_validate", *TRACKING_PRELOAD),
        status=_status,
    ),
}
