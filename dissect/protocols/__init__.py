"""Wire grammar, one module per protocol: header field tables with OSI tags -> field trees.

This is the display path: full field trees are built only for packets shown.
"""
