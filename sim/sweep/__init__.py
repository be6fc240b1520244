"""``llamaswap sweep``: many simulator runs spread over a Dask cluster, one tidy table out.

A sweep file (:mod:`sim.sweep.spec`) expands to runs, each an ordinary ``llamaswap sim`` run of one
scheduler on one trace. :mod:`sim.sweep.execute` runs one on a worker, :mod:`sim.sweep.engine`
hands them to Dask (an embedded ``LocalCluster`` or ``--cluster ADDRESS``), :mod:`sim.sweep.store`
keeps one result file per run key (``--resume``) and writes the table, :mod:`sim.sweep.figures`
draws it. See docs/sweep.md.
"""
