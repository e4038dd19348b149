"""Local state: the data directory (its one owner, `datadir`), safe files, the lock, ACLs and the identity.

Kept empty: `store.lock` is imported on the careful credential path.
"""
