"""The `tianmu` command line: thin Typer commands over the library."""
