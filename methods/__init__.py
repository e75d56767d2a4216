"""Built-in methods (importable as cirbench.methods.*); each module registers itself."""
