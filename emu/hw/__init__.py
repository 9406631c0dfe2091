"""The emulated silicon: topology, RAM banks, page-table formats, MMU, vCPUs; no kernel policy."""
