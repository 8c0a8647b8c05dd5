"""``python -m dissect.lab.server SCENARIO --params JSON --truth PATH`` (inside the namespace)."""

import sys

from dissect.lab._role import main

if __name__ == "__main__":
    sys.exit(main("server"))
