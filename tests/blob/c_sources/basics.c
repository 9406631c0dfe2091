/* Functions, loops, globals, string constants, recursion. */
int counter;
int table[16] = {1, 2, 3, 5, 8, 13, 21, 34};
static int hidden_state = 7;
const char *greeting = "hello, world\n";
extern int external_value;
extern void external_call(int);

int fib(int n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

long sum_table(void)
{
	long total = 0;
	for (int i = 0; i < 16; i++)
		total += table[i] * (i + 1);
	return total + hidden_state;
}

void bump(int by)
{
	counter += by;
	hidden_state ^= counter;
	if (counter > 100)
		external_call(counter + external_value);
}

unsigned long big_constants(unsigned long x)
{
	return (x * 0x9e3779b97f4a7c15UL) ^ 0x123456789abcdefUL ^ (x >> 33);
}

const char *pick(int which)
{
	static const char *names[] = {"zero", "one", "two", "three"};
	return which >= 0 && which < 4 ? names[which] : greeting;
}
