"""Where the torch stages run: the `device` setting, by name.

    auto   CUDA when torch sees a CUDA device, else the CPU (the default)
    cuda   the GPU; refused where torch sees none
    cpu    the CPU, even on a GPU machine

`DEVICES` maps each name to a function that says which torch device type it means here
("cuda" or "cpu"). PipelineConfig.device is checked against it (so the Prefect parameter
schema lists the names), and every stage that runs torch (proxy, align, refine, evaluate)
takes the resolved type. torch is imported on use, so a config module stays light.
"""

from __future__ import annotations

from collections.abc import Callable

from orca.registry import Registry

DEVICES: Registry[Callable[[], str]] = Registry("device")


class DeviceUnavailableError(ValueError):
    """`device` asks for CUDA on a machine where torch sees no CUDA device."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _no_cuda_reason() -> str:
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"


@DEVICES.register("auto")
def _auto() -> str:
    return "cuda" if cuda_available() else "cpu"


@DEVICES.register("cuda")
def _cuda() -> str:
    if not cuda_available():
        raise DeviceUnavailableError(_no_cuda_reason())
    return "cuda"


@DEVICES.register("cpu")
def _cpu() -> str:
    return "cpu"


def resolve_device(name: str, field: str = "device") -> str:
    """The torch device type ("cuda" or "cpu") that device `name` means on this machine.
    An unknown name raises UnknownNameError naming `field` and the valid names; "cuda"
    without CUDA raises DeviceUnavailableError."""
    DEVICES.check(name, field=field)
    try:
        return DEVICES.get(name)()
    except DeviceUnavailableError as err:
        raise DeviceUnavailableError(
            f"{field}={name!r} cannot be met on this machine: {err}; valid devices: "
            f"{', '.join(DEVICES.names())} ('auto' and 'cpu' run here)"
        ) from None


def torch_device(name: str, field: str = "device"):
    """`resolve_device(name)` as a torch.device."""
    import torch

    return torch.device(resolve_device(name, field))


def device_of(module) -> str:
    """Where `module`'s parameters live, as torch names it ("cpu", "cuda:0"): what a stage
    records as the device it ran on."""
    return str(next(module.parameters()).device)
