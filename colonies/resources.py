"""Resource strings of process conditions (§4.1): cpu as "<n>m", memory with SI or IEC units."""

from __future__ import annotations

import re

from colonies.errors import BadRequest

_UNITS = {
    "": 1,
    "K": 1000, "KB": 1000, "Kb": 1000,
    "M": 1000**2, "MB": 1000**2, "Mb": 1000**2,
    "G": 1000**3, "GB": 1000**3, "Gb": 1000**3,
    "T": 1000**4, "TB": 1000**4, "Tb": 1000**4,
    "Ki": 1024, "KiB": 1024,
    "Mi": 1024**2, "MiB": 1024**2,
    "Gi": 1024**3, "GiB": 1024**3,
    "Ti": 1024**4, "TiB": 1024**4,
}
_MEM = re.compile(r"^\s*(\d{1,18})\s*([A-Za-z]{0,3})\s*$")
_CPU = re.compile(r"^\s*(\d{1,15})m\s*$")
_MI = 1024**2


def parse_cpu(value: str) -> int:
    """Millicores; anything but "<n>m" is 0 (as the original)."""
    m = _CPU.match(value or "")
    return int(m.group(1)) if m else 0


def parse_mem(value: str) -> int:
    """Bytes; empty is 0; an unknown unit is a 400."""
    if not value:
        return 0
    m = _MEM.match(value)
    if not m or m.group(2) not in _UNITS:
        raise BadRequest(f"invalid memory or storage value {value!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def cpu_str(millis: int) -> str:
    return f"{millis}m"


def mem_str(nbytes: int) -> str:
    return f"{nbytes // _MI}Mi"

