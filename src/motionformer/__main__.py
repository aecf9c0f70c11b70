"""``python -m motionformer``: the same as the ``motionformer`` command."""

import sys

from motionformer.cli import main

sys.exit(main())
