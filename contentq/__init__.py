"""contentq: a Telegram channel content pipeline on RQ workers."""

__version__ = "0.1.0"
