"""Application-layer parsers (sans-I/O): reassembled TCP streams and UDP datagrams in,
typed records out. See :mod:`dissect.analysis.app.base` for the contract."""
