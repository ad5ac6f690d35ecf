"""Where the installed package keeps libcaudal and its headers.

They are installed beside the extension module: in a regular install that is
this package's directory; in an editable install (pip install -e .) the
Python files stay in the source tree and the extension, lib/ and include/
are in site-packages, so the extension's directory is the one to use.
"""

import importlib.util
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def prefix():
    if os.path.isdir(os.path.join(PACKAGE_DIR, "include")):
        return PACKAGE_DIR
    try:
        spec = importlib.util.find_spec("caudal._caudal")
    except ImportError:
        spec = None
    if spec is not None and spec.origin:
        return os.path.dirname(os.path.abspath(spec.origin))
    return PACKAGE_DIR


def include_dir():
    return os.path.join(prefix(), "include")


def lib_dir():
    return os.path.join(prefix(), "lib")
