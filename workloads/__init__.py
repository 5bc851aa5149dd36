"""Workloads: the programs raympc runs securely (small kernels now; diffusion models later)."""
