#!/bin/bash
# The smallest build: two files compiled on the builders ($CC is the distcc wrapper), linked on the host.
set -euo pipefail
$CC -O2 -c hello.c -o hello.o
$CC -O2 -c greeting.c -o greeting.o
$CC -o "$BUILDFARM_OUTPUT_DIR/hello" hello.o greeting.o
"$BUILDFARM_OUTPUT_DIR/hello"
