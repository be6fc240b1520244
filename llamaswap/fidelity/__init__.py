"""Fidelity: run a trace on the real daemon and in the simulator, record both, compare.

``simlog`` makes the simulator write the daemon's event-log format; ``replay`` turns a recorded log
back into a trace, routing spec and timing; ``live`` drives a real daemon with real fake upstreams;
``harness`` puts them together (``llamaswap fidelity``).
"""
