/* The command line's usage text. */
#pragma once

#include <stdio.h>

void usage(FILE *out);
