"""MedBridge: healthcare ERP middleware. See DESIGN.md for the layers and the dependency rule."""

__version__ = "0.1.0"
