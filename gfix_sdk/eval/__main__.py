"""``python -m gfix_sdk.eval``: the same as ``gfix eval``."""

import sys

from gfix_sdk.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
