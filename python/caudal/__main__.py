"""The ``caudal`` command.

``caudal run -n 4 --analytics a.py -- ./sim`` runs a simulation with online
analytics (see caudal/runtime/launcher.py). ``caudal config --cflags --libs``
prints what a C program needs to build against the libcaudal inside this
package::

    cc sim.c $(caudal config --cflags --libs)
"""

import argparse
import os
import sys

from . import _paths


def _config(args):
    if not (args.cflags or args.libs or args.prefix):
        print("caudal config: give at least one of --cflags, --libs, --prefix",
              file=sys.stderr)
        return 2
    inc, lib = _paths.include_dir(), _paths.lib_dir()
    missing = []
    if (args.cflags and not os.path.isfile(os.path.join(inc, "caudal.h"))):
        missing.append(os.path.join(inc, "caudal.h"))
    if args.libs and not any(
        n.startswith("libcaudal.so") for n in (os.listdir(lib) if os.path.isdir(lib) else ())
    ):
        missing.append(os.path.join(lib, "libcaudal.so"))
    if missing:
        print("caudal config: not found: %s (is caudal installed with pip?)"
              % ", ".join(missing), file=sys.stderr)
        return 1
    if args.prefix:
        print(_paths.prefix())
    words = []
    if args.cflags:
        words.append("-I" + inc)
    if args.libs:
        words += ["-L" + lib, "-Wl,-rpath," + lib, "-lcaudal"]
    if words:
        print(" ".join(words))
    return 0


def _parser():
    p = argparse.ArgumentParser(
        prog="caudal",
        description="Caudal: stream a simulation's arrays to online analytics.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser(
        "config", help="print compiler and linker flags for libcaudal",
        description="Print the flags that build a C program against the "
                    "libcaudal of this package: cc sim.c $(caudal config --cflags --libs)")
    c.add_argument("--cflags", action="store_true", help="print -I<include dir>")
    c.add_argument("--libs", action="store_true",
                   help="print -L<lib dir> -Wl,-rpath,<lib dir> -lcaudal")
    c.add_argument("--prefix", action="store_true",
                   help="print the package directory (holds include/ and lib/)")
    c.set_defaults(func=_config)
    sub.add_parser("version", help="print the version").set_defaults(func=_version)
    from .runtime import launcher

    launcher.add_parser(sub)
    from . import htmlreport

    htmlreport.add_parser(sub)
    return p


def _version(args):
    from . import __version__

    print(__version__)
    return 0


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    # As given: `caudal run` under Slurm may run itself again on another node.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "func", None):
        p.print_help(sys.stderr)
        return 2
    try:
        code = args.func(args)
    except Exception as e:  # a clear message, not a traceback
        print("caudal: error: %s" % e, file=sys.stderr)
        code = 1
    if args.command == "run":
        # The run is over and cleaned up, its files written. A Ctrl-C that
        # stopped ray.init half way can leave Ray's core-worker IO thread to
        # crash (SIGSEGV in _raylet.so) while the interpreter finalizes,
        # turning exit 130 into 139: skip finalization.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)
    return code


if __name__ == "__main__":
    sys.exit(main())
