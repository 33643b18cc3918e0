"""The ``medbridge`` command's command groups, one module each."""
