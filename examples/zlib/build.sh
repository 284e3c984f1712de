#!/bin/bash
# zlib: configure checks run through the distcc wrapper too; the library and its tests are built in parallel.
set -euo pipefail
CC="$CC" ./configure --prefix="$BUILDFARM_OUTPUT_DIR"
make -j"$BUILDFARM_JOBS"
make test
make install
