"""A study's results as plain data read from storage: the front, the knee, the hypervolume, a pick to ship.

Below both the report (which draws them) and export (which ships one): neither imports the other.
"""
