"""The command groups of the ``medbridge`` command, one module each (``cli.py`` registers them)."""
