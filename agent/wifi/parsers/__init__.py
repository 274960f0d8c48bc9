"""Text parsers for the Wi-Fi tools a desk or a ticket may show, one module per tool.
``parse_text`` asks each ``detect`` most distinctive first, netsh (localized labels) last.
Design notes: docs/agent-internals.md, "agent/wifi/parsers/__init__.py".
"""

from __future__ import annotations

from types import ModuleType

from . import airport, iw, iwconfig, netsh, nmcli, proc_wireless, system_profiler, wdutil
from ._model import WifiReading

__all__ = ["PARSERS", "UnrecognizedOutput", "detect", "parse_text"]

PARSERS: tuple[ModuleType, ...] = (system_profiler, wdutil, airport, iw, proc_wireless, iwconfig, nmcli, netsh)


class UnrecognizedOutput(ValueError):
    """No parser recognises the text (not Wi-Fi tool output, or a tool we do not know)."""


def detect(text: str) -> ModuleType | None:
    for module in PARSERS:
        if module.detect(text):
            return module
    return None


def parse_text(text: str) -> WifiReading:
    """The reading in a pasted tool output; raises ``UnrecognizedOutput`` for anything else."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    module = detect(text)
    if module is None:
        raise UnrecognizedOutput(
            "not recognised as output of netsh wlan show interfaces, airport -I, system_profiler "
            "SPAirPortDataType, wdutil info, iw link / station dump, /proc/net/wireless, nmcli or iwconfig"
        )
    return module.parse(text)
