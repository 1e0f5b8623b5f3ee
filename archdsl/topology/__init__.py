"""Training topologies: several networks, twins, state, phases and losses, as data."""
