"""effsearch's built-in plugins, registered through the `effsearch.plugins` entry points like any other."""
