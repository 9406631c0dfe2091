"""Python models of the Linux arm64 code that text replication touches, named after the files they mirror."""
