"""``python -m attn_export`` = ``attn-export``."""

import sys

from .cli import main

sys.exit(main())
