"""One module per command. Each has `run(args) -> int` for the parsed arguments (see cli.py, which declares
every command's flags and dispatches by table). Kept empty: `commands.credentials` is on the careful path."""
