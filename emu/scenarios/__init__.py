"""The scenario auditor: the REPLICATE_KTEXT series' sharp edges, each run on
the emulated machine with the v3 behaviour and with a remedy."""
