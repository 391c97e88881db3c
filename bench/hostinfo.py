"""What the benchmark drivers (run.py, anchors.py) record about the machine they run on."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def host() -> dict:
    """CPU model, cores (listed and usable by this process), the 1-minute load now, and the OS."""
    cpu, processors = "unknown", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("processor"):
                processors += 1
    except OSError:
        pass
    try:
        load = Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        load = "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": processors or os.cpu_count(), "usable_cores": usable, "load_at_start": load,
            "os": platform.system()}
