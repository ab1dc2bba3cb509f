/* The floor for an authorized_keys write: temp file, write, fsync, rename,
 * fsync of the directory, nothing else. Prints one time per run in
 * microseconds. Usage: floor DIR SIZE RUNS */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: floor DIR SIZE RUNS\n");
		return 2;
	}
	size_t size = strtoul(argv[2], NULL, 10);
	int runs = atoi(argv[3]);
	char *data = malloc(size + 1);
	int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (!data || dir < 0)
		return 1;
	memset(data, 'k', size);
	for (int i = 0; i < runs; i++) {
		long long t = now_us();
		int fd = openat(dir, ".floor.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || write(fd, data, size) != (ssize_t)size || fsync(fd) < 0 || close(fd) < 0 ||
		    renameat(dir, ".floor.tmp", dir, "floor") < 0 || fsync(dir) < 0)
			return 1;
		printf("%lld\n", now_us() - t);
	}
	unlinkat(dir, "floor", 0);
	free(data);
	close(dir);
	return 0;
}
