"""The runtime: leaf densities, the engine that runs a plan's ops, the compiled module, naive backend."""
