/* What the journal keeps beside its durable records: the index that
 * finds them (the task ids a directory holds, oldest first, and a cheap
 * count for the prune), and a small keyed cache (sshd -T answers). Both
 * are derived: nothing here is fsync'd, the index is read afresh from the
 * directory each time (the apply command and the daemon share the state
 * dir), and losing the cache costs one sshd -T, never a result. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "journal.h"

static int entry_cmp(const void *a, const void *b)
{
	const struct journal_entry *x = a, *y = b;
	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->id, y->id);
}

void journalcache_entries_free(struct journal_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].id);
	free(v);
}

/* The task ids stored in dir as <id>.json, oldest first. Any id the
 * contract allows is a name here, "." and ".." and "-x" included; a temp
 * file of safefile_replace never ends in .json. */
int journalcache_list(const struct safefile_dir *dir, struct journal_entry **ret, size_t *ret_n)
{
	int fd = openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct journal_entry *v = NULL;
	size_t n = 0;
	int r = 0;
	for (struct dirent *e; r == 0 && (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		char id[TASK_ID_MAX + 1];
		struct stat st;
		if (len <= 5 || len - 5 > TASK_ID_MAX || !streq(e->d_name + len - 5, ".json"))
			continue;
		snprintf(id, sizeof(id), "%.*s", (int)(len - 5), e->d_name);
		if (!str_is_token(id, TASK_ID_MAX) || fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		struct journal_entry *nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			r = -ENOMEM;
			break;
		}
		v = nv;
		v[n] = (struct journal_entry){ strdup(id), st.st_mtim };
		if (!v[n++].id)
			r = -ENOMEM;
	}
	closedir(d);
	if (r < 0) {
		journalcache_entries_free(v, n);
		return r;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), entry_cmp);
	*ret = v;
	*ret_n = n;
	return 0;
}

/* How many names dir holds, "." and ".." aside: cheap, no stat. */
size_t journalcache_count(const struct safefile_dir *dir)
{
	int fd = openat(dir->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	size_t n = 0;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return SIZE_MAX;
	}
	for (struct dirent *e; (e = readdir(d));)
		n += !streq(e->d_name, ".") && !streq(e->d_name, "..");
	closedir(d);
	return n;
}

#define CACHE_MAX ((size_t)1024 * 1024)

static void cache_name(const char *name, char *out, size_t size)
{
	snprintf(out, size, "cache.%s", name);
}

int journal_cache_get(struct journal *j, const char *name, const char *key, char **value, size_t *len)
{
	char file[NAME_MAX + 1], msg[128];
	_cleanup_free_ char *text = NULL;
	size_t n;
	struct safefile_stat st;
	cache_name(name, file, sizeof(file));
	int r = safefile_read(&j->dir, file, CACHE_MAX, &text, &n, &st, msg, sizeof(msg));
	if (r < 0)
		return r;
	size_t klen = strlen(key);
	if (!st.exists || n <= klen || memcmp(text, key, klen) != 0 || text[klen] != '\n')
		return -ENOENT;
	*len = n - klen - 1;
	*value = malloc(*len + 1);
	if (!*value)
		return -ENOMEM;
	memcpy(*value, text + klen + 1, *len);
	(*value)[*len] = '\0';
	return 0;
}

int journal_cache_put(struct journal *j, const char *name, const char *key, const char *value, size_t len)
{
	char file[NAME_MAX + 1];
	_cleanup_buf_ struct buf b = { 0 };
	cache_name(name, file, sizeof(file));
	int r = buf_printf(&b, "%s\n", key);
	if (r == 0)
		r = buf_append(&b, value, len);
	/* A cache needs no fsync: a lost entry costs one sshd -T. */
	if (r == 0)
		r = safefile_replace_nosync(&j->dir, file, b.data, b.len, 0600);
	return r;
}
