"""`python -m kubectl_teleport` runs the CLI."""

import sys

from kubectl_teleport.entry import main

sys.exit(main())
