"""Fidelity: run a trace on the real daemon and in the simulator, record both, compare.

``live`` drives a real daemon with real fake upstreams, ``probe`` measures this machine's overheads,
``harness`` puts them together with the simulator's event log (``sim.eventlog``) and the
comparison (``llamaswap.record.compare``) as ``llamaswap fidelity``. A leaf: only its CLI and
``bench/`` import it; the simulator does not.
"""
