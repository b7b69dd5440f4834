"""ocpi-hub: an OCPI 2.2.1 roaming hub."""

__version__ = "0.1.0"
