"""Load, fault and attack harnesses of the model server, and the in-process server they run."""
