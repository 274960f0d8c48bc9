"""Entry of the frozen ``cxpulse-trace`` executable: one path trace, the only place scapy lives.

The agent starts it where source installs run ``python -m cxpulse.agent.path.trace_child``
(``cxpulse.agent.path.child_argv.trace_child_argv``); arguments and JSON output are the same.
"""

import sys

from cxpulse.agent.path.trace_child import main

if __name__ == "__main__":
    sys.exit(main())
