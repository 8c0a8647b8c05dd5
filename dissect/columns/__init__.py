"""The fast path: frames decoded into compact per-frame tuples/arrays for analysis,
without building field trees."""
