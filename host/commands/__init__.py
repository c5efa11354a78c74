"""CLI subcommands, one module each.

A module here defines ``NAME`` (the subcommand), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. ``pgt.cli`` finds them by itself: adding a command means adding a module. Import heavy
packages (numpy, matplotlib) inside ``run`` so that ``pgt --help`` stays fast.
"""
