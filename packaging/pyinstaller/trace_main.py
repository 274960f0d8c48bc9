"""Entry of the frozen ``cxpulse-trace`` executable: one path trace, the only place scapy lives.
Same arguments and JSON output as ``python -m cxpulse.agent.path.trace_child`` from source.
Design notes: docs/installers.md, "packaging/pyinstaller/trace_main.py".
"""

import sys

from cxpulse.agent.path.trace_child import main

if __name__ == "__main__":
    sys.exit(main())
