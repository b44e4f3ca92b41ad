"""The subcommands of the ``histo2st`` command line, one module each, and their shared config and error handling.

Modules here import only the standard library at module level, so ``histo2st --help`` does not pay for torch or
spatialdata; each subcommand imports what it needs when it runs.
"""
