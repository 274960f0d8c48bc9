"""The agent as a Windows service (pywin32's service framework), started by the MSI's ServiceInstall.
Stop and shutdown spool the open batch; without pywin32 ``AVAILABLE`` is False.
Design notes: docs/agent-internals.md, "agent/service_windows.py".
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

try:
    import servicemanager
    import win32service
    import win32serviceutil
except ImportError:  # not Windows, or pywin32 missing: only `dispatch` callers check AVAILABLE
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "dispatch"]

# Generous: stopping drains in-flight probes and spools the open batch (a few seconds at most).
STOP_WAIT_HINT_MS = 30_000
# HandlerEx control and event codes (winsvc.h, WtsApi32.h): a session change is when the desk user
# may have changed, so the agent reads the console user at once instead of at its next refresh.
SERVICE_CONTROL_SESSIONCHANGE = 0x0000000E
SERVICE_ACCEPT_SESSIONCHANGE = 0x00000080
WTS_CONSOLE_CONNECT, WTS_CONSOLE_DISCONNECT = 0x1, 0x2
WTS_SESSION_LOGON, WTS_SESSION_LOGOFF = 0x5, 0x6
USER_CHANGING_EVENTS = frozenset({WTS_CONSOLE_CONNECT, WTS_CONSOLE_DISCONNECT, WTS_SESSION_LOGON, WTS_SESSION_LOGOFF})

if AVAILABLE:
    from .config import load
    from .service_runner import SERVICE_NAME, ServiceRunner

    class AgentService(win32serviceutil.ServiceFramework):
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = "cxpulse agent"
        _svc_description_ = "Measures network experience at this desk and sends it to the cxpulse collector."
        config_path = ""  # set by dispatch() before the service manager calls us

        def __init__(self, args):
            super().__init__(args)
            self.runner: ServiceRunner | None = None
            self.stop_asked = False

        def SvcStop(self):
            self._stop()

        def SvcShutdown(self):
            # Defining this makes the framework accept SERVICE_CONTROL_SHUTDOWN: Windows going down
            # is the same as a stop for us (spool the open batch, exit).
            self._stop()

        def GetAcceptedControls(self):
            # Also session changes (logon, logoff, console connect): SvcOtherEx gets them.
            return super().GetAcceptedControls() | SERVICE_ACCEPT_SESSIONCHANGE

        def SvcOtherEx(self, control, event_type, data):
            # Runs on the control thread and must return at once: only wake the agent's user refresh.
            if control == SERVICE_CONTROL_SESSIONCHANGE:
                if event_type in USER_CHANGING_EVENTS and self.runner is not None:
                    self.runner.refresh_user()
                return 0  # NO_ERROR
            return super().SvcOtherEx(control, event_type, data)

        def _stop(self):
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
            self.stop_asked = True
            if self.runner is not None:
                self.runner.request_stop()

        def SvcDoRun(self):
            log = logging.getLogger("cxpulse.agent.service")
            # Fail fast on bad configuration: the exception stops the service with an error, which
            # the event log shows and the recovery actions retry.
            cfg = load(self.config_path)
            self.runner = ServiceRunner(cfg)
            if self.stop_asked:  # a stop that came while the configuration was being read
                self.runner.request_stop()
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting, collector {cfg.collector}")
            try:
                self.runner.run()
            except Exception:
                log.exception("agent stopped on an error")
                raise
            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: stopped")


def dispatch(config_path: str, log_file: str, verbose: int = 0) -> int:
    """Hand this process to the service manager; returns when the service has stopped."""
    if not AVAILABLE:
        raise RuntimeError("pywin32 is not available")
    _log_to_file(log_file, verbose)
    AgentService.config_path = os.path.abspath(config_path)
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(AgentService)
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except win32service.error as exc:
        # 1063 (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT): started from a console, not by the SCM.
        if getattr(exc, "winerror", None) == 1063:
            print(
                "cxpulse agent service: this is the Windows service entry; start it with "
                f"`sc start {SERVICE_NAME}`, or run `cxpulse agent run --config FILE` in a console",
                file=sys.stderr,
            )
            return 2
        raise
    return 0


def _log_to_file(path: str, verbose: int) -> None:
    """A service has no console: log to a bounded file beside the configuration (5 x 1 MB)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=1 << 20, backupCount=4, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):  # main() configured stderr, which goes nowhere under the SCM
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose < 2 else logging.DEBUG)
