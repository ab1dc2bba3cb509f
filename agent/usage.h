/* The command line's usage text and its global options (-c, -V, -h, -v
 * before the command), which kps-agent and kps-agent-tool both parse. */
#pragma once

#include <getopt.h>
#include <stdio.h>

#define USAGE_SHORTOPTS "+c:Vhv"
extern const struct option usage_options[];

void usage(FILE *out);
