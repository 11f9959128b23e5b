"""Streaming CSV to JSON conversion: a pure core that the csv job drives (no I/O in here).

Pieces, in the order data flows through them:
    options.py   what a conversion is asked to do; header key naming; delimiter sniffing
    framing.py   bytes in -> header + frames that start and end on record boundaries
    blocks.py    one frame -> JSON rows (fast numpy path, exact csv-module path as fallback)
    fastpath.py  the vectorised frame converter (no Python object per field)
    exact.py     the reference conversion through Python's csv module
    values.py    the lossless type-inference rules
    stream.py    ordering of frames and outputs; a synchronous driver for files
    pool.py      frame conversion in worker processes over shared memory
"""
