"""One line that says where a benchmark ran: time, CPU model, cores, Python, packages."""

import datetime
import importlib.metadata
import os
import platform


def machine(packages):
    """``"YYYY-MM-DD HH:MM UTC, <CPU model>, N CPUs, python X, <package> <version>, ..."``."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    return (f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {model}, "
            f"{os.cpu_count()} CPUs, python {platform.python_version()}, "
            + ", ".join(versions))
