"""Processes that compose domain rules, the store, the bus and connectors: the stock-movement
intake and the inventory-to-finance posting; later the durable workflows."""
