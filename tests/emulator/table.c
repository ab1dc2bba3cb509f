/* A string-keyed hash table with chaining. Keys are borrowed from the values
 * they index; the hash is seeded at random, as the keys come from clients. */
#include <sys/random.h>

#include "emulator.h"

struct entry {
	const char *key;
	void *value;
	struct entry *next;
};

struct table {
	struct entry **buckets;
	size_t nbuckets;	/* a power of two */
	size_t count;
	uint64_t seed;
};

static uint64_t table_hash(const struct table *t, const char *key)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 29);
}

struct table *table_new(void)
{
	struct table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->nbuckets = 64;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	if (getrandom(&t->seed, sizeof(t->seed), 0) != sizeof(t->seed))
		t->seed = (uint64_t)now_ms();
	return t;
}

void table_free(struct table *t, void (*free_value)(void *))
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct entry *e = t->buckets[i];
		while (e) {
			struct entry *next = e->next;
			if (free_value)
				free_value(e->value);
			free(e);
			e = next;
		}
	}
	free(t->buckets);
	free(t);
}

static struct entry **table_slot(const struct table *t, const char *key)
{
	struct entry **e = &t->buckets[table_hash(t, key) & (t->nbuckets - 1)];
	while (*e && !streq((*e)->key, key))
		e = &(*e)->next;
	return e;
}

void *table_get(const struct table *t, const char *key)
{
	struct entry *e = *table_slot(t, key);
	return e ? e->value : NULL;
}

static void table_grow(struct table *t)
{
	size_t n = t->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b));
	if (!b)
		return;		/* longer chains, still correct */
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct entry *e = t->buckets[i];
		while (e) {
			struct entry *next = e->next;
			size_t j = table_hash(t, e->key) & (n - 1);
			e->next = b[j];
			b[j] = e;
			e = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

int table_put(struct table *t, const char *key, void *value)
{
	struct entry **slot = table_slot(t, key);
	if (*slot)
		return -EEXIST;
	struct entry *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->key = key;
	e->value = value;
	*slot = e;
	if (++t->count > t->nbuckets)
		table_grow(t);
	return 0;
}

void *table_del(struct table *t, const char *key)
{
	struct entry **slot = table_slot(t, key);
	struct entry *e = *slot;
	if (!e)
		return NULL;
	void *value = e->value;
	*slot = e->next;
	free(e);
	t->count--;
	return value;
}

size_t table_count(const struct table *t)
{
	return t->count;
}
