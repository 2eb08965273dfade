"""Starts a ClickHouse server from the chdb wheel's shared library.

Comet writes this file next to the managed server's data and runs it as
`python launch_clickhouse.py LIBRARY CONFIG`. The chdb wheel carries a full
ClickHouse engine whose library exports the server's entry point; loading the
library directly (without importing the chdb package, which would initialise
the embedded engine and make the server fail) and calling that entry point
runs a real clickhouse-server in this process.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: launch_clickhouse.py LIBRARY CONFIG", file=sys.stderr)
        return 2
    library, config = sys.argv[1], sys.argv[2]

    # Stop with Comet: if Comet dies without a clean shutdown, the kernel
    # sends us SIGTERM and ClickHouse shuts down cleanly.
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        return 1

    # No watchdog process: Comet is the supervisor.
    os.environ["CLICKHOUSE_WATCHDOG_ENABLE"] = "0"
    engine = ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    entry = engine._Z25mainEntryClickHouseServeriPPc
    entry.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    entry.restype = ctypes.c_int
    args = [b"clickhouse-server", b"--config-file=" + config.encode()]
    argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    return entry(len(args), argv)


if __name__ == "__main__":
    sys.exit(main())
