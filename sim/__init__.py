"""The simulator: replays request traces through the real sans-IO core inside SimPy.

Only the I/O edge lives here (simulated clock, simulated model servers, trace files, reports);
every scheduling and lifecycle decision is taken by :mod:`llamaswap.core`.
"""
