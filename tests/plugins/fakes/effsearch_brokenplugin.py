"""A third-party plugin that cannot be imported: effsearch must report it and carry on."""

raise RuntimeError("this plugin is broken on purpose")
