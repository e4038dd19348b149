"""Test and benchmark harness shared by tests/ and bench/ (never shipped, never imported by the product):
a devcluster child process, the pinned kubectl, fault-injecting servers."""
