"""reports/RESULTS.md: a comparison report plus how it was made (machine, date, wall time).

`orca demo` writes it after its benchmark and compare flows, so the committed file says
exactly which command produced the numbers, on what, and how long it took.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orca.atomic import atomic_path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one, else platform's guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_description() -> str:
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = f", {total / 2**30:.0f} GiB memory"
    return f"{os.cpu_count()} CPU cores ({cpu_model()}){memory}, {platform.system()}"


def write_results(
    path: str | Path, comparison_markdown: str | Path, context: Mapping[str, Any]
) -> Path:
    """Write `path`: a title, `context` as a list, then the comparison report's body."""
    body = Path(comparison_markdown).read_text().splitlines()
    if body and body[0].startswith("# "):
        body = body[1:]
    # The report lists its own context (machine, date, ...): keep only what `context` lacks.
    body = [line for line in body if not any(line.startswith(f"- **{k}:**") for k in context)]
    lines = ["# ORCA on the embedded demo suite", ""]
    lines += [f"- **{key}:** {value}" for key, value in context.items()]
    lines += body
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
