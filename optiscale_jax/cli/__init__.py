"""The command-line programs (``optiscale-bench``, ``optiscale-peers``, ...), one module each.

Each module's ``run()`` is its console-script entry point; ``_common`` holds what
they share (absl start-up, help, one-line errors, the compilation cache).
"""
