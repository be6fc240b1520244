"""The daemon: the sans-IO core hosted on asyncio + aiohttp, with real upstream processes.

Modules, one job each:

- ``host``: :class:`AsyncHost`: the core's Clock and Host on an asyncio loop; request tickets.
- ``processes``: real upstream subprocesses: spawn, health check, stop, crash reports, logs.
- ``watchdog``: a tiny helper process that kills every upstream group if the daemon dies.
- ``logs``: ring-buffer log monitors (proxy, upstream, per model) with live subscribers.
- ``errors``: llama-swap's error envelope and the ErrorKind -> HTTP status mapping.
- ``metrics``: Prometheus metrics fed from core observations and the request path.
- ``extract``: which model a request is for (JSON, multipart, query) and the body filters.
- ``forward``: relaying a request to an upstream and its response back, chunk by chunk.
- ``upstream_client``: the lean keep-alive HTTP/1.1 client used for plain-http upstreams.
- ``loading``: the ``sendLoadingState`` SSE stream shown while a model loads.
- ``contract``: the two Protocols (``Server``, ``Backend``) that ``app`` is typed against.
- ``app``: the aiohttp routes. ``runtime``: one config's router+host+processes (a ``Backend``).
- ``server``: the running daemon (the ``Server``): listen, reload, drain and shut down. ``cli``: ``llamaswap serve``.
- ``fake_upstream``: ``llamaswap fake-upstream``, a llama-server look-alike for tests and demos.
- ``testing``: start real daemons with real fake upstreams on free ports (tests, benchmarks).
"""
