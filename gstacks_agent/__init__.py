"""gstacks-agent: turns a Linux host into a GlobalStacks host."""

__version__ = "0.1.0"
