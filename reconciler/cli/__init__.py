"""The command line: parse, call one typed command function, render, map to an exit code."""
