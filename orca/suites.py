"""Named task suites, for the sweep flow: `orca bench --suite NAME`."""

from __future__ import annotations

from orca.registry import Registry

SUITES: Registry[tuple[str, ...]] = Registry("suite")

# The embedded suite: real data shipped in packages or made by orca's own solvers, spanning
# NAS-Bench-360's task types. Runs offline on the packaged MiniLM body.
SUITES.register(
    "demo",
    (
        "gunpoint",
        "acsf1",
        "basicmotions",
        "digits",
        "darcy",
        "burgers",
        "breast-cancer",
        "covid3month",
    ),
)
SUITES.register(
    "nas-bench-360",
    (
        "cifar100",
        "spherical",
        "ninapro",
        "fsd50k",
        "nb360-darcy",
        "psicov",
        "cosmic",
        "ecg",
        "satellite",
        "deepsea",
    ),
)
SUITES.register("pdebench", ("pdebench-advection", "pdebench-burgers", "pdebench-darcy"))
SUITES.register("openml-cc18", ("openml-credit-g", "openml-kc1", "openml-diabetes"))
