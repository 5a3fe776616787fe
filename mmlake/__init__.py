"""The front door of mmlake: the ``mmlake`` command and its settings (nothing else lives here)."""

__version__ = "0.1.0"
