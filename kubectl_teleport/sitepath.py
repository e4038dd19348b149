"""Make site-packages importable when the fast launcher started the interpreter with -S.

Standard library only. Called right before the first import of a third-party library.
"""

from __future__ import annotations

import sys


def ensure() -> None:
    """Run `site.main()` once if `site` was skipped at start-up (adds site-packages and .pth files)."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()
