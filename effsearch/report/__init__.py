"""Reading a study back: the Pareto front as plain data, and the views drawn from it."""
