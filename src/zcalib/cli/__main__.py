"""``python -m zcalib.cli``: the ``zcalib`` command."""

import sys

from zcalib.cli import main

sys.exit(main())
