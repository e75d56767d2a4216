"""Built-in encoder kinds; each module registers itself with @register_encoder."""
