"""The composition root (DESIGN.md): which adapters the settings choose, the supervisor of
background loops, and the process entry points. Only this package and ``app`` choose
implementations."""
