"""Built-in datasets (importable as cirbench.datasets.*); each module registers itself."""
