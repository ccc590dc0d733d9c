"""`python -m flexvid ...`: the `flexvid` command, from a checkout that is not installed."""
import sys

from .cli import main

sys.exit(main())
