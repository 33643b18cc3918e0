"""Sub-commands of ``medbridge``, one module per area (registered in ``medbridge.cli``)."""
