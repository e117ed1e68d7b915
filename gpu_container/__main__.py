"""``python -m gpu_container COMMAND``: see ``gpu_container.cli``."""

import sys

from gpu_container.cli import main

sys.exit(main())
