/* Structs, pointer arithmetic, byte/halfword/word/doubleword accesses. */
struct node {
	struct node *next;
	unsigned char tag;
	short weight;
	int value;
	long long big;
	char name[12];
};

struct node pool[8];
struct node *free_list;
unsigned short halves[5] = {1, 2, 3, 4, 5};
signed char bytes[7] = {-1, 2, -3, 4, -5, 6, -7};

void init_pool(void)
{
	for (int i = 0; i < 8; i++) {
		pool[i].next = i < 7 ? &pool[i + 1] : 0;
		pool[i].tag = (unsigned char)i;
		pool[i].weight = (short)(i * -100);
		pool[i].value = i * 1000;
		pool[i].big = (long long)i << 40;
	}
	free_list = &pool[0];
}

long walk(const struct node *n)
{
	long sum = 0;
	while (n) {
		sum += n->tag + n->weight + n->value + (n->big >> 20) + n->name[3];
		n = n->next;
	}
	return sum + halves[3] + bytes[6];
}

char *copy_name(struct node *n, const char *src)
{
	char *dst = n->name;
	while ((*dst++ = *src++) != 0)
		;
	return n->name + 2;
}

int compare(const void *a, const void *b)
{
	const struct node *x = a, *y = b;
	return (x->value > y->value) - (x->value < y->value);
}
