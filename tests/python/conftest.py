"""Puts tools/python on the path so `import pspace` finds the package of
this repository (PSPACE_LIB, set by ctest, picks the library)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tools", "python"))
