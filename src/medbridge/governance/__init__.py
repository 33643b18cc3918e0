"""Governance: clients, roles, policies, schema registry, service catalog, audit log."""
