"""Why are the fine-tuned models weak? In-memory experiments on one task, no Prefect.

For a task and a list of variants (named refine/model settings), this trains the model on
the ingest splits (train / validation carved as the pipeline does) and prints, per variant:
the learning curve (train loss, validation metric per epoch), the best epoch, the test
metric of the best-validation state, and the wall time. `--probe` adds linear probes:
logistic/ridge regression, selected on validation, on (a) the raw input, (b) the initial
embedder's tokens, (c) the frozen pretrained body's outputs, (d) a frozen random body's
outputs, with the tokens mean-pooled and concatenated.

    .venv/bin/python benchmarks/diagnose_quality.py gunpoint --variants current recipe
    .venv/bin/python benchmarks/diagnose_quality.py digits --probe --variants recipe
    .venv/bin/python benchmarks/diagnose_quality.py --task-file my_task/task.yaml --probe

Variants are `name` or `name:key=value,key=value` with RefineConfig fields (`epochs`,
`lr`, ...) plus `scratch=1` (random body) and `align=N` (N embedder epochs of OTDD first).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from orca.config.stages import RefineConfig
from orca.data.task_file import load_task_file
from orca.data.tasks import get_task
from orca.metrics import LOSSES, METRICS
from orca.model import create_model
from orca.model.bodies import load_body
from orca.model.orca_model import set_body_dropout
from orca.stages.ingest import split_train_validation
from orca.training.finetune import evaluate
from orca.training.recipe import choose_batch_size
from orca.training.recipe_run import train_with_recipe
from orca.training.refine_modes import apply_refine_mode

AUTO = {"epochs": "auto", "batch_size": "auto", "lr": "auto", "patience": "auto"}
PRESETS = {
    "current": {},  # the task's registered refine config
    # what fine-tuning did before the recipe: the body's dropout, one lr, no warm start
    "old": {"dropout": None, "task_lr_scale": 1.0, "probe_steps": 0},
    "recipe": AUTO,  # every field the recipe chooses left to it
}


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    name, _, rest = text.partition(":")
    settings: dict[str, object] = dict(PRESETS.get(name, {}))
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        settings[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    return name if not rest else text, settings


def splits(task_name: str, seed: int, raw=None):
    """The task's train / validation / test tensors as ingest carves them for `seed`;
    `raw` (a RawTask) replaces the task's loader, e.g. arrays exported by
    benchmarks/compute_scaling.py to a machine without the data packages."""
    spec = get_task(task_name)
    raw = raw if raw is not None else spec.loader()
    if raw.x_val is not None:
        x_tr, x_va, y_tr, y_va = raw.x_train, raw.x_val, raw.y_train, raw.y_val
    else:
        x_tr, x_va, y_tr, y_va = split_train_validation(
            raw.x_train,
            raw.y_train,
            spec.validation_fraction,
            seed,
            stratify=spec.output == "classification",
        )
    as_t = torch.from_numpy
    return (
        spec,
        (as_t(x_tr), as_t(y_tr)),
        (as_t(x_va), as_t(y_va)),
        (as_t(raw.x_test), as_t(raw.y_test)),
    )


def run_variant(
    spec,
    train,
    val,
    test,
    backbone: str,
    settings: dict,
    seed: int,
    *,
    device: str = "cpu",
    proxy: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Train as the refine stage does (recipe plan, warm start, fine-tuning), in memory.

    Settings beyond RefineConfig's fields: `scratch=1` (random body), `raw=1` (no
    standardisation), `align=N` (N embedder epochs first; `align.FIELD=V` overrides the
    task's AlignConfig), `mode=...` (refine mode), `steps=S` (epochs for about S optimizer
    steps at the recipe's batch size). `proxy` gives the proxy features and labels instead
    of extracting them here."""
    settings = dict(settings)
    scratch = bool(settings.pop("scratch", 0))
    raw = bool(settings.pop("raw", 0))  # 1: no input/target standardisation
    align_epochs = int(settings.pop("align", 0))
    align_keys = [key for key in settings if key.startswith("align.")]
    align_overrides = {key.removeprefix("align."): settings.pop(key) for key in align_keys}
    mode = str(settings.pop("mode", "full"))
    steps = settings.pop("steps", None)
    if steps is not None:
        batch = settings.get("batch_size", "auto")
        batch = choose_batch_size(len(train[0])) if batch == "auto" else int(batch)
        settings["epochs"] = max(1, math.ceil(int(steps) / math.ceil(len(train[0]) / batch)))
    config = RefineConfig.from_dict({**spec.refine.to_dict(), **settings})
    torch.manual_seed(seed)
    body = load_body(backbone, pretrained=not scratch).float()  # a half-precision export too
    model = create_model(spec, backbone, seed=seed, pretrained=not scratch, body=body)
    if not raw:
        model.fit_scalers(*train)
    if align_epochs:  # on the CPU, as the align stage runs it
        align = spec.align.replace(epochs=align_epochs, **align_overrides)
        _align(model, spec, train, backbone, align, seed, proxy)
    model.to(device)
    if config.dropout is not None:
        set_body_dropout(model, config.dropout)
    trainable = set(apply_refine_mode(model, mode))
    metric = METRICS.get(spec.metric)
    start = time.perf_counter()
    plans = []
    result, plan, _ = train_with_recipe(
        model,
        trainable,
        train,
        val,
        config,
        LOSSES.get(spec.loss),
        metric,
        seed=seed,
        on_plan=plans.append,
    )
    seconds = time.perf_counter() - start
    model.load_state_dict(result.best_state)
    return {
        "plan": plan,
        "curve": [(r.epoch, r.train_loss, r.val_metric) for r in result.history],
        "best_epoch": result.best_epoch,
        "val": result.best_val_metric,
        "test": evaluate(model, *test, metric),
        "seconds": seconds,
    }


def proxy_features(backbone: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The proxy dataset's features and labels, as the proxy stage extracts them."""
    from orca.config.stages import ProxyConfig
    from orca.proxy.datasets import resolve_proxy_name
    from orca.stages.proxy import FEATURISERS

    body = load_body(backbone)
    name = resolve_proxy_name("auto", body.kind)
    _, proxy = FEATURISERS.get(body.kind)(body, name, ProxyConfig(), seed, None)
    return np.asarray(proxy.features), np.asarray(proxy.labels)


def _align(model, spec, train, backbone: str, align, seed: int, proxy=None) -> None:
    from orca.alignment.pseudo_labels import kmeans_pseudo_labels
    from orca.training.align import train_embedder

    features, labels = proxy if proxy is not None else proxy_features(backbone, seed)
    y = train[1].numpy()
    target_labels = (
        y if spec.output == "classification" else kmeans_pseudo_labels(y, k=10, seed=seed)
    )
    train_embedder(
        model,
        train[0],
        torch.from_numpy(np.asarray(target_labels)).long(),
        torch.as_tensor(features),
        torch.as_tensor(labels).long(),
        align,
        seed=seed,
    )


@torch.no_grad()
def _pooled(fn, x: torch.Tensor, pool: str, batch: int = 64) -> np.ndarray:
    def reduce(tokens: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, D) or (B, T * D)
        return tokens.mean(dim=1) if pool == "mean" else tokens.flatten(1)

    return torch.cat([reduce(fn(x[i : i + batch])) for i in range(0, len(x), batch)]).numpy()


def linear_probes(spec, train, val, test, backbone: str, seed: int) -> dict[str, float]:
    """Test metric of a validation-selected linear model on each feature set, with the
    tokens mean-pooled and concatenated: the raw input, the initial embedder's tokens, and
    the outputs of the frozen body, pretrained and random (the same initial embedder)."""
    torch.manual_seed(seed)
    model = create_model(spec, backbone, seed=seed).eval()
    model.fit_scalers(*train)
    random_body = load_body(backbone, pretrained=False).eval()
    features = {
        "raw input": lambda x: x.reshape(len(x), 1, -1).float(),
        "initial embedder tokens": model.embed,
        "frozen pretrained body": lambda x: model.encode(model.embed(x)),
        "frozen random body": lambda x: random_body(model.embed(x)),
    }
    out = {}
    for name, fn in features.items():
        for pool in ("mean", "concat"):
            if name == "raw input" and pool == "concat":
                continue  # one token: the same as the mean
            splits = [_pooled(fn, part[0], pool) for part in (train, val, test)]
            out[f"{name}, {pool}"] = _probe(spec, *splits, train[1], val[1], test[1])
    return out


def _probe(spec, f_tr, f_va, f_te, y_tr, y_va, y_te) -> float:
    from sklearn.linear_model import LogisticRegression, Ridge

    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
    f_tr, f_va, f_te = ((f - mu) / sd for f in (f_tr, f_va, f_te))
    metric = METRICS.get(spec.metric)
    best = None
    for c in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
        if spec.output == "classification":
            clf = LogisticRegression(C=c, max_iter=2000).fit(f_tr, y_tr.numpy())
            score = lambda f, clf=clf: _full_logits(clf, f, spec.num_outputs)  # noqa: E731
        else:
            clf = Ridge(alpha=1.0 / c).fit(f_tr, y_tr.numpy().reshape(len(f_tr), -1))
            shape = tuple(y_tr.shape[1:])
            score = lambda f, clf=clf, shape=shape: clf.predict(f).reshape(-1, *shape)  # noqa: E731
        value = metric.compute(score(f_va), y_va.numpy())
        key = value if metric.lower_is_better else -value
        if best is None or key < best[0]:
            best = (key, metric.compute(score(f_te), y_te.numpy()))
    return best[1]


def _full_logits(clf, f: np.ndarray, num_classes: int) -> np.ndarray:
    logits = np.full((len(f), num_classes), -1e9, dtype=np.float32)
    # log of clipped probabilities: a confident model's log-probability 0 would be -inf
    logits[:, clf.classes_] = np.log(np.clip(clf.predict_proba(f), 1e-12, None))
    return logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", nargs="?")
    parser.add_argument("--task-file")
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--variants", nargs="*", default=["current"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--curves", action="store_true", help="print every epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = args.task or load_task_file(args.task_file).name
    spec, train, val, test = splits(task, 0)
    print(
        f"# {task}: train {len(train[0])}, val {len(val[0])}, test {len(test[0])}, "
        f"metric {spec.metric}"
    )
    if args.probe:
        for name, value in linear_probes(spec, train, val, test, args.backbone, 0).items():
            print(f"probe  {name:34s} test {value:.4f}", flush=True)
    for text in args.variants:
        name, settings = parse_variant(text)
        tests = []
        for seed in range(args.seeds):
            r = run_variant(spec, train, val, test, args.backbone, settings, seed)
            tests.append(r["test"])
            if args.curves:
                for epoch, loss, val_metric in r["curve"]:
                    print(
                        f"  {name} s{seed} ep{epoch:3d} train_loss {loss:.4f} val {val_metric:.4f}"
                    )
            plan = r["plan"]
            planned = (
                f" plan: {plan.epochs} ep x {plan.steps_per_epoch} steps, bs {plan.batch_size}, "
                f"lr {plan.lr:g}, {plan.examples_per_second:.0f} ex/s, "
                f"expected {plan.expected_seconds:.0f}s"
                if plan is not None
                else ""
            )
            print(
                f"{name:40s} seed {seed} best_ep {r['best_epoch']:3d}/{len(r['curve'])} "
                f"val {r['val']:.4f} test {r['test']:.4f} {r['seconds']:.0f}s{planned}"
            )
        print(f"{name:40s} mean test {np.mean(tests):.4f} ± {np.std(tests):.4f}", flush=True)


if __name__ == "__main__":
    main()
