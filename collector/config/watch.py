"""Keeps a running collector on the newest central config and pushes every change to open streams.
File change, SIGHUP or a stored version all end as a row every collector follows; a bad edit is logged.
Design notes: docs/collector-internals.md, "collector/config/watch.py".
"""

from __future__ import annotations

import asyncio
import logging
import signal

from .central import CentralConfig, ConfigError, apply, parse
from .versions import VersionStore

__all__ = ["ConfigWatcher"]

log = logging.getLogger("cxpulse.collector.config")

POLL_S = 2.0


class ConfigWatcher:
    def __init__(self, service, base, url: str, path: str | None = None, poll_s: float = POLL_S, on_change=None):
        self.service, self.base, self.url, self.path, self.poll_s = service, base, url, path, poll_s
        self.on_change = on_change  # called with the parsed CentralConfig (retention uses it)
        self.version = 0
        self.central: CentralConfig | None = None
        self._file_text: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._vs: VersionStore | None = None

    async def start(self) -> None:
        """Store the file (if any) as a version, run the newest version; ConfigError if the file is bad."""
        self._vs = await asyncio.to_thread(VersionStore, self.url)
        if self.path:
            text = _read(self.path)
            parse(text)  # raises ConfigError: collector serve refuses to start with the reason
            await self._store(text)
        await self._follow()
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
        # Not the main thread; Windows (no SIGHUP).
        except (AttributeError, NotImplementedError, RuntimeError, ValueError):
            pass
        self._task = asyncio.ensure_future(self._loop())

    def retention(self) -> tuple[dict[str, float], float | None, float | None]:
        """The running version's ``[retention]``: (days per kind it names, 15-minute rollup days or
        None, minute rollup days or None)."""
        if self.central is None:
            return {}, None, None
        return dict(self.central.raw_days), self.central.rollup_days, self.central.minute_rollup_days

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._vs is not None:
            await asyncio.to_thread(self._vs.close)

    def _versions(self) -> VersionStore:
        if self._vs is None:
            raise RuntimeError("ConfigWatcher.start() has not run")
        return self._vs

    async def _store(self, text: str) -> None:
        version, created = await asyncio.to_thread(self._versions().add, text, f"file {self.path}")
        self._file_text = text
        if created:
            log.warning("central config: %s stored as version %d", self.path, version)

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._check_file()
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:  # never crash after start-up (a database hiccup): try again next round
                log.exception("central config: check failed; retrying in %.0f s", self.poll_s)

    async def _check_file(self) -> None:
        if not self.path:
            return
        try:
            text = _read(self.path)
        except ConfigError as exc:
            log.error("central config: %s; version %d keeps running", exc, self.version)
            return
        if text == self._file_text:
            return
        try:
            parse(text)
        except ConfigError as exc:
            self._file_text = text  # say it once per edit, not every poll
            log.error("central config: %s refused, version %d keeps running: %s", self.path, self.version, exc.reason)
            return
        await self._store(text)

    async def _follow(self) -> None:
        latest = await asyncio.to_thread(self._versions().latest)
        if latest is None or latest.version == self.version:
            return
        try:
            cc = parse(latest.toml)
        except ConfigError as exc:  # stored by a newer or older release that checks differently
            log.error(
                "central config version %d cannot run here (%s); version %d keeps running",
                latest.version,
                exc.reason,
                self.version,
            )
            self.version = latest.version
            return
        self.version, self.central = latest.version, cc
        told = self.service.set_config(apply(self.base, cc, latest.version))
        log.warning(
            "central config version %d (by %s) is now pushed; %d open streams told", latest.version, latest.actor, told
        )
        if self.on_change is not None:
            self.on_change(cc)


def _read(path: str) -> str:
    from .central import MAX_TEXT

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8") from None
