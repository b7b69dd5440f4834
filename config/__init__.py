"""Settings: the one immutable Settings object, built once at start-up."""
