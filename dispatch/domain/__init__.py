"""The domain: state machines, refusals (no HTTP codes), commands, and pure rules (arrival
windows, phone numbers, CSV rows). Imports no web framework, database or queue."""
