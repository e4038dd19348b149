"""kubectl-teleport: a kubectl exec credential plugin for machine identities (bots).

Kept tiny on purpose: every kubectl call imports this package on its hot path.
"""

__version__ = "0.1.0"
