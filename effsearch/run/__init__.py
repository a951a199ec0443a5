"""One run of a configuration, from its untrained figures to its measured precisions.

untrained.py   what a configuration costs before it trains: its pruned graph, untrained, in every precision
pipeline.py    a training run: train on the ranks, export, then make and measure every precision
reference.py   a model that arrives trained: exported as given, its precisions made and measured the same way
"""
