"""The `raympc` commands, one module each: `register(sub)` adds its sub-parser, `run(args)` runs it.

Commands sit at the top of the layering: they may use bench, sweeps, workloads, activations and the
runtime; nothing below imports them.
"""
