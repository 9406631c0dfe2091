/* Dense and sparse switches: jump tables with .byte/.hword (label - label) / 4. */
int dense(int x, int y)
{
	switch (x) {
	case 0: return y + 1;
	case 1: return y * 3;
	case 2: return y - 7;
	case 3: return y << 2;
	case 4: return y ^ 0x55;
	case 5: return y | 9;
	case 6: return -y;
	case 7: return y / 3;
	case 8: return y % 5;
	default: return 0;
	}
}

int sparse(int x)
{
	switch (x) {
	case 3: return 30;
	case 100: return 1000;
	case 2000: return 7;
	case -5: return 55;
	default: return -1;
	}
}

int wide(int x, int *p)
{
	switch (x) {
	case 0: p[0] = 1; p[1] = 2; p[2] = 3; p[3] = 4; p[4] = 5; p[5] = 6; p[6] = 7; p[7] = 8; break;
	case 1: for (int i = 0; i < 64; i++) p[i] = p[i] * i + 3; break;
	case 2: for (int i = 0; i < 64; i++) p[i] ^= p[63 - i]; break;
	case 3: p[9] = p[3] + p[4]; break;
	case 4: return p[x * 2];
	case 5: return p[x * 3] + 1;
	default: return 99;
	}
	return p[0];
}
