"""The ``rarlctl`` command line."""
