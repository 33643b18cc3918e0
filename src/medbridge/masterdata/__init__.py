"""Item master, locations, accounts, cross-references and unit conversion; the validation of
inbound movements against them."""
