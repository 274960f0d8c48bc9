import sys

from cxpulse.cli import main

sys.exit(main())
