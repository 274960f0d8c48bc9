"""cxpulse: endpoint experience monitoring for contact centers."""

__version__ = "0.1.0"
