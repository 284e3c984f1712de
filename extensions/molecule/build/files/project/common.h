#ifndef COMMON_H
#define COMMON_H
const char *greet(void);
int sum(int n);
#endif
