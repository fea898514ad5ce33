"""influx_archive.cli: the thin Typer front end (parse, call the library, render, map errors)."""
