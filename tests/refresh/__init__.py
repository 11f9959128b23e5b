"""Aggregated refreshes: the pure plan, the adapters, and whole workers against moto."""
