"""Training logic (separate from the pure nn.Modules in mmnar_core.model)."""
