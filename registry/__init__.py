"""The Redis registry: keys, codec, store, snapshot loading and the operator CLI."""
