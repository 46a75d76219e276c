"""Job handlers: each pipeline step is a thin function `run(ctx, **payload)` in a module of this package.

The kinds (which handler, which queue) are listed in `contentq.runtime.kinds`; the worker imports a
handler by its dotted path when it first runs one.
"""
