"""pgt.sim: the simulated ring and the simulated firmware target."""
