"""Record what a host did (daemon or simulator) as a JSONL event log, and learn from it.

The log is host-independent: the daemon writes it in production (``serve --record``), the simulator
can write the very same format, so fidelity checks compare like with like.
"""

from llamaswap.record.eventlog import EventLog, LogReader, read_log
from llamaswap.record.recorder import Recorder

__all__ = ["EventLog", "LogReader", "Recorder", "read_log"]
