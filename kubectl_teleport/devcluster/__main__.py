"""`python -m kubectl_teleport.devcluster` runs the admin CLI (same as `kubectl-teleport-devcluster`)."""

import sys

from .cli import main

sys.exit(main())
