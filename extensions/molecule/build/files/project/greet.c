#include "common.h"
const char *greet(void) { return "hello from buildfarm"; }
