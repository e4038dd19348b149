"""Crash soak (the engine and what it checks: harness/soak.py): SIGKILL `credentials` and `login` at random
moments during renewal, then check what is left.

    .dev/venv/bin/python -m bench.soak --trials 200 --seed 1      (from the repository root)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness import soak as engine
from harness.soak import SoakFailure, soak


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "") + (engine.__doc__ or ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--check-locks-every", type=int, default=1, metavar="N")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kt-soak-") as tmp:
        try:
            soak(args.trials, args.seed, Path(tmp), check_locks_every=args.check_locks_every)
        except SoakFailure as err:
            print(f"soak: FAILED: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
