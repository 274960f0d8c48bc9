"""Entry of the frozen ``cxpulse`` executable: the agent's commands only (cxpulse.agent.service)."""

import sys

from cxpulse.agent.service import main

if __name__ == "__main__":
    sys.exit(main())
