"""intake: the inquiry desk of a civic-tech fellowship program."""

__version__ = "0.1.0"
