"""The version, in a module of its own: the emitters and the CLI import it without importing the package's
entry points."""
__version__ = "0.1.0"
