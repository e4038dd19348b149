"""What the plugin writes for others to read: kubeconfig entries, and tbot-style destination directories."""
