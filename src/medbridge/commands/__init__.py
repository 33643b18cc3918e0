"""The ``medbridge`` command's sub-commands, one module per feature (registered in ``cli``)."""
