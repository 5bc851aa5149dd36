"""Small helpers every layer of raympc shares: files, Markdown tables, result files, figures.

Nothing here knows about SPU, Ray or a workload, so any raympc package may import it.
"""
