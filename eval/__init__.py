"""The scheduler evaluation (``python -m eval.run_evaluation``): workloads from the real traces, the
sweep, the deadline-planning reference. A package of the checkout, not installed with llamaswap."""
