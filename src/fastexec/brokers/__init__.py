"""Brokers behind one interface: see ``base.Broker``."""
