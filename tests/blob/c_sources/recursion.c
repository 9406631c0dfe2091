/* Recursion, function pointers, varargs-free callbacks, 64-bit arithmetic. */
typedef long (*op_fn)(long, long);

static long add(long a, long b) { return a + b; }
static long mul(long a, long b) { return a * b; }
static long sub(long a, long b) { return a - b; }

op_fn ops[] = {add, mul, sub};

long apply(int which, long a, long b)
{
	return ops[which % 3](a, b);
}

unsigned long ackermann(unsigned long m, unsigned long n)
{
	if (m == 0)
		return n + 1;
	if (n == 0)
		return ackermann(m - 1, 1);
	return ackermann(m - 1, ackermann(m, n - 1));
}

int gcd(int a, int b)
{
	return b ? gcd(b, a % b) : a;
}

void quicksort(long *v, long lo, long hi)
{
	if (lo >= hi)
		return;
	long p = v[(lo + hi) / 2], i = lo, j = hi;
	while (i <= j) {
		while (v[i] < p) i++;
		while (v[j] > p) j--;
		if (i <= j) { long t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
	}
	quicksort(v, lo, j);
	quicksort(v, i, hi);
}

static unsigned long long state = 88172645463325252ULL;

unsigned long long xorshift(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

int main(void)
{
	long v[5] = {5, 3, 9, 1, 7};
	quicksort(v, 0, 4);
	return (int)(apply(1, v[0], v[4]) + gcd(48, 18) + ackermann(2, 3) + xorshift());
}
