#include <stdio.h>
#include "common.h"
int main(void) { printf("%s %d\n", greet(), sum(10)); return 0; }
